"""Sparse × dense products that repeat bit for bit on CUDA.

cuSPARSE's COO product behind `torch.sparse.mm` gives floats that differ in the last bits from run to run on CUDA
(with or without torch's deterministic mode, which neither fixes nor flags it), in its output and its gradient: on an
H200 the node-level OAD group with GAT students scored 0.8115, then 0.7993, with the same seed
(docs/benchmarks/determinism.md). Under deterministic algorithms on CUDA, `spmm` computes the same product as a
gather and an `index_add_`, whose deterministic kernels repeat; elsewhere it is `torch.sparse.mm`, so CPU floats do
not move.
"""

from __future__ import annotations

import torch
from torch import Tensor


def spmm(a: Tensor, h: Tensor, deterministic: bool | None = None) -> Tensor:
    """a: [N, M] sparse COO, coalesced and constant (no gradient to its values); h: [M, D] dense → a·h: [N, D].

    deterministic: None picks the gather path on CUDA when torch's deterministic algorithms are on; True or False
    forces it (the tests compare both paths on the CPU).
    """
    if deterministic is None:
        deterministic = h.is_cuda and torch.are_deterministic_algorithms_enabled()
    if not deterministic:
        return torch.sparse.mm(a, h)
    row, col = a.indices()
    return h.new_zeros(a.size(0), h.size(1)).index_add_(0, row, a.values().unsqueeze(-1) * h[col])
