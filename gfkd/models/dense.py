"""DenseTwin: the dense form of a `GraphClassifier`, sharing its parameters, for soft adjacencies.

A generator differentiates through `adj: [B, N, N]`; the twin aggregates densely, then hands the real nodes
(`mask`) to the very same node-wise `update` of each layer, so BatchNorm sees exactly the nodes the sparse model
sees and padded rows stay zero. On 0/1 graphs the twin equals the sparse model (tests/models/test_dense.py).

    >>> twin = DenseTwin(model)           # no copy: twin.model is model
    >>> logits = twin(x, adj, mask)       # x: [B, N, F], adj: [B, N, N], mask: [B, N] bool → [B, C]
    >>> logits = twin(x, adj, mask, buckets=size_buckets(mask.sum(1), 4))  # the same, less padding

With `buckets` each group of graphs is cut to its own largest graph before the dense aggregation, and every layer's
`update` still gets all real nodes of the batch at once, so BatchNorm statistics (and hooks on them) see the same
nodes, only in group order.
"""

from __future__ import annotations

import torch
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

    def embed_buckets(self, x: Tensor, adj: Tensor, mask: Tensor, buckets: list[tuple[Tensor, int]],
                      projected: bool = False) -> Tensor:
        """`embed` with each bucket (indices [B_b], bound n_b) cut to [B_b, n_b, ·] → [B, H] in the input order."""
        m = self.model
        masks = [mask[idx, :n] for idx, n in buckets]
        xs = [x[idx, :n] * mb.unsqueeze(-1) for (idx, n), mb in zip(buckets, masks)]
        adjs = [adj[idx, :n, :n] for idx, n in buckets]
        real = [int(mb.sum()) for mb in masks]
        for i, conv in enumerate(m.convs):
            aggs = [conv.aggregate_dense(xb, ab, mb, projected=projected and i == 0)[mb]
                    for xb, ab, mb in zip(xs, adjs, masks)]
            upd = conv.update(torch.cat(aggs))  # every real node of the batch in one call, as in node_embeddings
            new = []
            for xb, mb, u in zip(xs, masks, upd.split(real)):
                h = u.new_zeros(*mb.shape, u.size(-1))
                h[mb] = u
                new.append(h + xb if (m.residual and i > 0) else h)
            xs = new
        h = torch.cat([xb.sum(1) for xb in xs])  # [B, H], bucket order
        if m.pooling == "mean":
            h = h / torch.cat([mb.sum(1, keepdim=True) for mb in masks]).clamp(min=1)
        order = torch.cat([idx for idx, _ in buckets])
        back = torch.empty_like(order)
        back[order] = torch.arange(order.numel(), device=order.device)
        return h[back]

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False,
                buckets: list[tuple[Tensor, int]] | None = None) -> Tensor:
        """x: [B, N, F], adj: [B, N, N], mask: [B, N] → logits [B, C]; `buckets` from `size_buckets`, or None."""
        if buckets is None:
            return self.model.head(self.embed(x, adj, mask, projected))
        return self.model.head(self.embed_buckets(x, adj, mask, buckets, projected))
