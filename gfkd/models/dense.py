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
        return self._layers([(x, adj, mask)], projected)[0]

    def _layers(self, parts: list[tuple[Tensor, Tensor, Tensor]], projected: bool) -> list[Tensor]:
        """The layers over padded parts (x [B_p, n_p, ·], adj [B_p, n_p, n_p], mask [B_p, n_p]) → [B_p, n_p, H] each.
        Each part aggregates densely on its own padding; every layer's node-wise `update` takes the real nodes of all
        parts in one call, so BatchNorm sees them together."""
        m = self.model
        # gfkd.md §8's loops, as the sparse model adds them; a widened student's body (also run here) has none
        if getattr(m, "loops_in_data", False):
            parts = [(xb, dense_self_loops(ab, mb, m.skip_isolated), mb) for xb, ab, mb in parts]
        masks = [mb for _, _, mb in parts]
        xs = [xb * mb.unsqueeze(-1) for xb, _, mb in parts]
        real = [int(mb.sum()) for mb in masks]
        for i, conv in enumerate(m.convs):
            aggs = [conv.aggregate_dense(xb, ab, mb, projected=projected and i == 0)[mb]  # [n_real_p, F or H]
                    for xb, (_, ab, mb) in zip(xs, parts)]
            upd = conv.update(aggs[0] if len(aggs) == 1 else torch.cat(aggs))  # real nodes only: [n_real, H]
            new = []
            for xb, mb, u in zip(xs, masks, upd.split(real)):
                h = u.new_zeros(*mb.shape, u.size(-1))  # [B_p, n_p, H]
                h[mb] = u
                new.append(h + xb if (m.residual and i > 0) else h)
            xs = new
        return xs

    def _pool(self, h: Tensor, mask: Tensor) -> Tensor:
        """[B, N, H] node embeddings → [B, H] (sum, or mean over real nodes)."""
        h = h.sum(1)
        return h / mask.sum(1, keepdim=True).clamp(min=1) if self.model.pooling == "mean" else h

    def embed(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False) -> Tensor:
        """Pooled graph embeddings [B, H] (sum, or mean over real nodes)."""
        return self._pool(self.node_embeddings(x, adj, mask, projected), mask)

    def embed_buckets(self, x: Tensor, adj: Tensor, mask: Tensor, buckets: list[tuple[Tensor, int]],
                      projected: bool = False) -> Tensor:
        """`embed` with each bucket (indices [B_b], bound n_b) cut to [B_b, n_b, ·] → [B, H] in the input order."""
        parts = [(x[idx, :n], adj[idx, :n, :n], mask[idx, :n]) for idx, n in buckets]
        h = torch.cat([self._pool(hb, mb) for hb, (_, _, mb) in zip(self._layers(parts, projected), parts)])
        order = torch.cat([idx for idx, _ in buckets])  # h is in bucket order
        back = torch.empty_like(order)
        back[order] = torch.arange(order.numel(), device=order.device)
        return h[back]

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor, projected: bool = False,
                buckets: list[tuple[Tensor, int]] | None = None) -> Tensor:
        """x: [B, N, F], adj: [B, N, N], mask: [B, N] → logits [B, C]; `buckets` from `size_buckets`, or None."""
        if buckets is None:
            return self.model.head(self.embed(x, adj, mask, projected))
        return self.model.head(self.embed_buckets(x, adj, mask, buckets, projected))


def dense_self_loops(adj: Tensor, mask: Tensor, skip_isolated: bool = False) -> Tensor:
    """adj: [B, N, N] (a_ij weighs j → i, zero diagonal), mask: [B, N] → adj + diag(loops): a self-loop of weight 1
    on every real node, or (`skip_isolated`) on those with an out-edge of positive weight (a nonzero column).
    The diagonal added is a constant: no gradient reaches it."""
    loops = mask if not skip_isolated else mask & (adj.detach() > 0).any(-2)
    return adj + torch.diag_embed(loops.to(adj.dtype))
