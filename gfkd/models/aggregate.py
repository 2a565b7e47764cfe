"""Weighted sum aggregation out_i = Σ_{(j→i)} w_e·x_j that keeps no per-edge tensor for backward.

Autograd through `scatter(w[:, None] * x[src], dst)` saves the [E, H] message tensor of every layer; on a
generator's candidate edge list (hundreds of thousands of soft edges) that dominates memory. This Function saves
only x, w and the indices, builds messages in chunks of `CHUNK` edges in forward and backward, and returns the
same values and gradients (tests/models/test_aggregate.py checks both against autograd in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 1 << 16


class _WeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, src: Tensor, dst: Tensor, w: Tensor) -> Tensor:
        out = x.new_zeros(x.shape)
        for s in range(0, src.numel(), CHUNK):
            e = slice(s, s + CHUNK)
            out.index_add_(0, dst[e], x[src[e]] * w[e].unsqueeze(-1))
        ctx.save_for_backward(x, src, dst, w)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, src, dst, w = ctx.saved_tensors
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty_like(w) if ctx.needs_input_grad[3] else None
        for s in range(0, src.numel(), CHUNK):
            e = slice(s, s + CHUNK)
            g = grad[dst[e]]  # [chunk, H]
            if grad_x is not None:
                grad_x.index_add_(0, src[e], g * w[e].unsqueeze(-1))
            if grad_w is not None:
                grad_w[e] = (g * x[src[e]]).sum(-1)
        return grad_x, None, None, grad_w


def weighted_sum(x: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
    """x: [N, H], edge_index: [2, E] (src, dst), weight: [E] → Σ_{e: dst=i} w_e·x_src: [N, H]."""
    return _WeightedSum.apply(x, edge_index[0], edge_index[1], weight)
