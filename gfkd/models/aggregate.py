"""Weighted sum aggregation out_i = Σ_{(j→i)} w_e·x_j as a sparse-dense product, with no per-edge [E, H] tensor in
forward or backward.

With A the [N, N] matrix A[dst_e, src_e] = w_e (duplicate edges add up):
    forward      out    = A·x                       (CSR SpMM)
    backward     ∂x     = Aᵀ·∂out                   (CSR SpMM on the transposed pattern)
                 ∂w_e   = ⟨∂out[dst_e], x[src_e]⟩    (SDDMM: `torch.sparse.sampled_addmm` on A's pattern)
Autograd through `scatter(w[:, None] * x[src], dst)` saves the [E, H] message tensor of every layer and builds
several more in backward; on a generator's candidate edge list (10⁵–10⁶ soft edges at REDDIT-BINARY size) those
dominated memory and time. Here only x, w and the index structure (O(E) integers, computed once per edge list and
shared by the layers that reuse the same `edge_index` tensor) are kept. tests/models/test_aggregate.py checks values
and gradients against autograd in float64.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class _Pattern:
    """The CSR layouts of one edge list: rows by dst (for A) and rows by src (for Aᵀ)."""

    n: int
    perm: Tensor  # [E] edge order sorted by dst (stable)
    crow: Tensor  # [n + 1]
    col: Tensor  # [E] src of the dst-sorted edges
    perm_t: Tensor  # [E] edge order sorted by src (stable)
    crow_t: Tensor
    col_t: Tensor  # [E] dst of the src-sorted edges


def _csr_rows(rows: Tensor, n: int) -> tuple[Tensor, Tensor]:
    perm = torch.argsort(rows, stable=True)
    crow = rows.new_zeros(n + 1)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return perm, crow


def _pattern(src: Tensor, dst: Tensor, n: int) -> _Pattern:
    perm, crow = _csr_rows(dst, n)
    perm_t, crow_t = _csr_rows(src, n)
    return _Pattern(n, perm, crow, src[perm], perm_t, crow_t, dst[perm_t])


_last: tuple[weakref.ref, int, int, _Pattern] | None = None


def _cached_pattern(edge_index: Tensor, n: int) -> _Pattern:
    """The pattern of `edge_index`, reused while the same (unmodified) tensor comes back: the layers of one forward
    pass, and their recomputation under checkpointing, share one edge list."""
    global _last
    if _last is not None:
        ref, version, size, pat = _last
        if ref() is edge_index and version == edge_index._version and size == n:
            return pat
    pat = _pattern(edge_index[0], edge_index[1], n)
    _last = (weakref.ref(edge_index), edge_index._version, n, pat)
    return pat


def _csr(crow: Tensor, col: Tensor, values: Tensor, n: int) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta" (once per process)
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


class _WeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, pat: _Pattern) -> Tensor:
        ctx.pat = pat
        ctx.save_for_backward(x, w)
        if pat.col.numel() == 0:
            return torch.zeros_like(x)
        return _csr(pat.crow, pat.col, w.index_select(0, pat.perm).to(x.dtype), pat.n) @ x  # index_select: 3× w[perm]

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        pat = ctx.pat
        grad_x = grad_w = None
        empty = pat.col.numel() == 0
        grad = grad.contiguous()
        if ctx.needs_input_grad[0]:
            grad_x = (torch.zeros_like(x) if empty
                      else _csr(pat.crow_t, pat.col_t, w.index_select(0, pat.perm_t).to(x.dtype), pat.n) @ grad)
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(w)
            if not empty:
                a = _csr(pat.crow, pat.col, torch.zeros(pat.col.numel(), dtype=x.dtype, device=x.device), pat.n)
                dots = torch.sparse.sampled_addmm(a, grad, x.t(), beta=0.0).values()  # ⟨grad[dst], x[src]⟩, dst order
                grad_w.index_copy_(0, pat.perm, dots.to(w.dtype))  # perm covers every edge
        return grad_x, grad_w, None


def weighted_sum(x: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
    """x: [N, H], edge_index: [2, E] (src, dst), weight: [E] → Σ_{e: dst=i} w_e·x_src: [N, H]."""
    return _WeightedSum.apply(x, weight, _cached_pattern(edge_index, x.size(0)))
