"""OAD's graph-aware discriminator: a small GCN over the student's graph, one score per node (oad.md §3).

    D_k(A, h) = GCN(d → d_D) → ReLU → GCN(d_D → 1)          [default, d_D = 16]
    D_k(A, h) = GCN(d → 1)                                  [gcn_student = reference: one layer]

The output s is a logit for "h came from the real student k"; with `out_relu` (the reference code) s = ReLU(s), so
σ(s) ≥ ½ everywhere and nodes with a non-positive pre-activation pass no gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gfkd.models.spmm import spmm


class GCNDiscriminator(nn.Module):
    """Args: in_dim d, hidden d_D, layers 2 (or 1), out_relu: ReLU before the sigmoid."""

    def __init__(self, in_dim: int, hidden: int = 16, layers: int = 2, out_relu: bool = False):
        super().__init__()
        if layers not in (1, 2):
            raise ValueError("a discriminator has 1 or 2 GCN layers")
        dims = [in_dim, hidden, 1] if layers == 2 else [in_dim, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            bound = math.sqrt(6.0 / (a + b))
            self.weights.append(nn.Parameter(torch.empty(a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.zeros(b)))
        self.out_relu = out_relu

    def forward(self, h: Tensor, adj: Tensor | None) -> Tensor:
        """h: [N, d], adj: [N, N] sparse normalised adjacency, or None for the graph-agnostic D (the same layers
        on each node alone, an MLP) → logits s: [N]."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = (h @ w if adj is None else spmm(adj, h @ w)) + b
            if i < len(self.weights) - 1:
                h = h.relu()
        s = h.squeeze(-1)
        return s.relu() if self.out_relu else s
