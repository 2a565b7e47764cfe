"""DenseTwin: the dense form of a `GraphClassifier`, sharing its parameters, for soft adjacencies.

A generator differentiates through `adj: [B, N, N]`; the twin aggregates densely, then hands the real nodes
(`mask`) to the very same node-wise `update` of each layer, so BatchNorm sees exactly the nodes the sparse model
sees and padded rows stay zero. On 0/1 graphs the twin equals the sparse model (tests/models/test_dense.py).

    >>> twin = DenseTwin(model)           # no copy: twin.model is model
    >>> logits = twin(x, adj, mask)       # x: [B, N, F], adj: [B, N, N], mask: [B, N] bool → [B, C]
"""

from __future__ import annotations

from torch import Tensor, nn

from gfkd.models.classifier import GraphClassifier


class DenseTwin(nn.Module):
    def __init__(self, model: GraphClassifier):
        super().__init__()
        self.model = model

    def node_embeddings(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False) -> Tensor:
        """x: [B, N, F] (or [B, N, H] if `projected`), adj: [B, N, N], mask: [B, N] → [B, N, H], zero on padding."""
        m = self.model
        x = x * mask.unsqueeze(-1)
        for i, conv in enumerate(m.convs):
            agg = conv.aggregate_dense(x, adj, mask, projected=projected and i == 0)  # [B, N, F] (GIN) or [B, N, H] (GCN)
            upd = conv.update(agg[mask])  # node-wise update on real nodes only: [n_real, H]
            h = upd.new_zeros(*mask.shape, upd.size(-1))  # [B, N, H]
            h[mask] = upd
            x = h + x if (m.residual and i > 0) else h
        return x

    def embed(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False) -> Tensor:
        """Pooled graph embeddings [B, H] (sum, or mean over real nodes)."""
        h = self.node_embeddings(x, adj, mask, projected).sum(1)
        if self.model.pooling == "mean":
            h = h / mask.sum(1, keepdim=True).clamp(min=1)
        return h

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False) -> Tensor:
        """x: [B, N, F], adj: [B, N, N], mask: [B, N] → logits [B, C]."""
        return self.model.head(self.embed(x, adj, mask, projected))
