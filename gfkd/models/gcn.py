"""GCN layer and classifier ("Semi-Supervised Classification with Graph Convolutional Networks", arXiv 1609.02907).

    h' = ReLU(BN(D̂^{-1/2} (A + I) D̂^{-1/2} · h · W + b)),  D̂ = diag((A + I)·1)

Self-loops are added by the layer (the data carries none). The dense form sets the diagonal of A to 1 (no gradient
through it), as acgkd.md §6 specifies. Under gfkd.md §8's `self_loops_in_data` the classifier clears
`adds_self_loops` and the layer takes the loops the graph has (the reference normalisation: in-degree at both ends),
which is the same except on nodes left without one (`selfloop_skip_isolated`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import add_remaining_self_loops, scatter

from gfkd.models.aggregate import weighted_sum
from gfkd.models.classifier import GraphClassifier
from gfkd.models.gin import _norm


class GCNLayer(nn.Module):
    adds_self_loops = True  # False: the graph carries them (GraphClassifier with loops_in_data)

    def __init__(self, in_dim: int, out_dim: int, bn: bool = True):
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.norm = _norm(out_dim, bn)

    @property
    def projection(self) -> Tensor:
        """The [H, F] weight applied before aggregation."""
        return self.lin.weight

    def aggregate(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None,
                  projected: bool = False) -> Tensor:
        """x: [N, F], edge_index: [2, E], edge_weight: [E] or None → D̂^{-1/2} Â D̂^{-1/2} x W + b: [N, H]."""
        n = x.size(0)
        if edge_weight is None:
            edge_weight = torch.ones(edge_index.size(1), dtype=x.dtype, device=x.device)
        (src, dst), w = (add_remaining_self_loops(edge_index, edge_weight, fill_value=1.0, num_nodes=n)
                         if self.adds_self_loops else (edge_index, edge_weight))
        deg = scatter(w, dst, dim=0, dim_size=n, reduce="sum")
        dinv = deg.clamp(min=1).pow(-0.5)
        xw = x if projected else self.lin(x)
        return weighted_sum(xw, torch.stack([src, dst]), w * dinv[src] * dinv[dst]) + self.bias

    def aggregate_dense(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False) -> Tensor:
        """x: [B, N, F], adj: [B, N, N] (soft, zero diagonal; or carrying the loops, without `adds_self_loops`),
        mask: [B, N] → [B, N, H]."""
        adj_hat = adj
        if self.adds_self_loops:  # Â = A with diagonal 1, no gradient through the diagonal
            adj_hat = adj.masked_fill(torch.eye(adj.size(-1), dtype=torch.bool, device=adj.device), 1.0)
        dinv = adj_hat.sum(-1).clamp(min=1).pow(-0.5)  # [B, N]
        xw = x if projected else self.lin(x)
        return dinv.unsqueeze(-1) * (adj_hat @ (dinv.unsqueeze(-1) * xw)) + self.bias

    def update(self, h: Tensor) -> Tensor:
        """h: [n, H] aggregated real nodes → [n, H]."""
        return self.norm(h).relu()


class GCNClassifier(GraphClassifier):
    layer_cls = GCNLayer
    arch = "gcn"
