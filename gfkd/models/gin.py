"""GIN layer and classifier ("How Powerful are Graph Neural Networks?", arXiv 1810.00826).

    h_i' = ReLU(BN(MLP((1 + ε)·h_i + Σ_{j∈N(i)} h_j))),  ε = 0 fixed,  MLP = Linear → BN → ReLU → Linear
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

from gfkd.models.aggregate import weighted_sum
from gfkd.models.classifier import GraphClassifier


def _norm(dim: int, bn: bool) -> nn.Module:
    return nn.BatchNorm1d(dim) if bn else nn.Identity()


class GINLayer(nn.Module):
    """When the layer narrows the width (F > H), the MLP's first Linear is applied before aggregating, which is
    the same map (W(x_i + Σ_j a_ij x_j) = W x_i + Σ_j a_ij W x_j) on H instead of F columns: wide degree one-hot
    inputs (D + 1 = 1001 bins) then cost no [E, F] message tensor."""

    eps = 0.0

    def __init__(self, in_dim: int, out_dim: int, bn: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, out_dim), _norm(out_dim, bn), nn.ReLU(),
                                 nn.Linear(out_dim, out_dim))
        self.norm = _norm(out_dim, bn)
        self.narrow = in_dim > out_dim

    @property
    def projection(self) -> Tensor | None:
        """The [H, F] weight applied before aggregation (None when the layer aggregates its raw input)."""
        return self.mlp[0].weight if self.narrow else None

    def _pre(self, x: Tensor) -> Tensor:
        return F.linear(x, self.mlp[0].weight) if self.narrow else x

    def aggregate(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None,
                  projected: bool = False) -> Tensor:
        """x: [N, F] (or [N, H] already `projected` by `first_projection`), edge_index: [2, E], edge_weight: [E] or
        None → (1 + ε)·x + Σ_j a_ij x_j: [N, F or H]."""
        x = x if projected else self._pre(x)
        if edge_weight is not None:  # soft edges of a generator: no [E, F] tensor kept for backward
            return (1 + self.eps) * x + weighted_sum(x, edge_index, edge_weight)
        src, dst = edge_index
        return (1 + self.eps) * x + scatter(x[src], dst, dim=0, dim_size=x.size(0), reduce="sum")

    def aggregate_dense(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False) -> Tensor:
        """x: [B, N, F] (or projected [B, N, H]), adj: [B, N, N] (soft, a_ij weighs j → i), mask: [B, N] → [B, N, ·]."""
        x = x if projected else self._pre(x)
        return (1 + self.eps) * x + adj @ x

    def update(self, h: Tensor) -> Tensor:
        """h: [n, F] (or [n, H] when narrowing) aggregated real nodes → [n, H]."""
        h = self.mlp[1:](h + self.mlp[0].bias) if self.narrow else self.mlp(h)
        return self.norm(h).relu()


class GINClassifier(GraphClassifier):
    layer_cls = GINLayer
    arch = "gin"
