"""Node features of pseudo-graphs (acgkd.md §5): tempered softmax of free logits, the one-hot (entropy) prior, and
the triangular degree one-hot that is differentiable in the adjacency.

    x_ik = max(0, 1 − |deg_i − k|) for k < D,     x_iD = clamp(deg_i − D + 1, 0, 1)
On integer degrees this equals the loader's one-hot(min(deg, D)).
"""

from __future__ import annotations

import torch
from torch import Tensor


def entropy_prior(x: Tensor, mask: Tensor) -> Tensor:
    """H̄(X): mean entropy of the node feature rows over real nodes (x: [B, N, F], mask: [B, N])."""
    h = -(x * torch.log(x.clamp_min(1e-12))).sum(-1)  # [B, N]
    return (h * mask).sum() / mask.sum().clamp(min=1)


def degree_one_hot(deg: Tensor, max_degree: int) -> Tensor:
    """Triangular one-hot of (possibly fractional) degrees: deg [...] → [..., D + 1]."""
    k = torch.arange(max_degree + 1, device=deg.device, dtype=deg.dtype)
    x = (1 - (deg.unsqueeze(-1) - k).abs()).clamp(min=0)
    last = (deg - max_degree + 1).clamp(0, 1)
    return torch.cat([x[..., :max_degree], last.unsqueeze(-1)], dim=-1)


def one_hot_rows(logits: Tensor) -> Tensor:
    """Exact one-hot of the argmax of each row: [..., F] → [..., F]."""
    return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).to(logits.dtype)


class _Interpolate(torch.autograd.Function):
    """(1 − f)·wt[k0] + f·wt[k1] for rows [n] of wt: [D + 1, H]; saves the indices and f, not the [n, H] rows."""

    @staticmethod
    def forward(ctx, frac: Tensor, wt: Tensor, k0: Tensor, k1: Tensor) -> Tensor:
        ctx.save_for_backward(frac, wt, k0, k1)
        lo = wt[k0]
        return lo.add_(wt[k1].sub_(lo).mul_(frac.unsqueeze(-1)))

    @staticmethod
    def backward(ctx, grad: Tensor):
        frac, wt, k0, k1 = ctx.saved_tensors
        grad_frac = grad_wt = None
        if ctx.needs_input_grad[0]:
            grad_frac = (grad * (wt[k1] - wt[k0])).sum(-1)
        if ctx.needs_input_grad[1]:
            f = frac.unsqueeze(-1)
            grad_wt = torch.zeros_like(wt).index_add_(0, k0, grad * (1 - f)).index_add_(0, k1, grad * f)
        return grad_frac, grad_wt, None, None


def degree_projection(deg: Tensor, weight: Tensor, max_degree: int) -> Tensor:
    """degree_one_hot(deg, D) @ weightᵀ without building the [..., D + 1] one-hot: the triangular one-hot of a
    degree d interpolates between columns ⌊d⌋ and ⌊d⌋ + 1 of `weight` ([H, D + 1]), with d clamped to [0, D].
    Keeps no [..., H] tensor for backward (the two weight rows are gathered again there).

    Returns:
        [..., H], differentiable in `deg` (and `weight`).
    """
    d = deg.clamp(0, max_degree)
    k0 = d.detach().floor().long().clamp(max=max_degree)
    k1 = (k0 + 1).clamp(max=max_degree)
    frac = d - k0.to(d.dtype)
    shape = deg.shape
    out = _Interpolate.apply(frac.reshape(-1), weight.t().contiguous(), k0.reshape(-1), k1.reshape(-1))
    return out.view(*shape, out.size(-1))
