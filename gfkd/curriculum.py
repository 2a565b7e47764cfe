"""Curriculum over pseudo-graphs (acgkd.md §10): a difficulty per graph and a pace from easy to all.

Epoch e trains on the easiest ⌈q_e·M⌉ graphs (ties broken by graph_id), shuffled with the epoch's seed:
    q_e = min(1, q_0 + (1 − q_0)·(e/E_c)^p)     linear p = 1, root p = ½
    q_e = min(1, q_0·2^⌊3e/E_c⌋)                 step
and q_e = 1 from E_c on in every kind (step with q_0 < 1/8 would not get there by itself).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def pace(epoch: int, kind: str, q0: float, until: int) -> float:
    """q_e, the fraction of the graphs admitted at `epoch` (1 from `until` = E_c on; 1 always when kind = off)."""
    if kind == "off" or until <= 0 or epoch >= until:
        return 1.0
    if kind == "step":
        return min(1.0, q0 * 2 ** math.floor(3 * epoch / until))
    p = {"linear": 1.0, "root": 0.5}[kind]
    return min(1.0, q0 + (1 - q0) * min(1.0, epoch / until) ** p)


def full_epoch(until: float, epochs: int) -> int:
    """E_c, the first epoch with every graph admitted: ⌈until·epochs⌉, at the latest the last epoch."""
    return min(math.ceil(until * epochs), epochs - 1)


def easiest(difficulty: Tensor, graph_id: Tensor, fraction: float) -> Tensor:
    """Indices of the ⌈fraction·M⌉ smallest difficulties [M], ties broken by graph_id, in that order."""
    m = difficulty.numel()
    k = min(m, math.ceil(fraction * m - 1e-9))
    order = torch.from_numpy(np.lexsort((graph_id.numpy(), difficulty.double().numpy())))
    return order[:k]


def teacher_entropy(logits: Tensor) -> Tensor:
    """d_g = H(p_T)/log C: logits [M, C] → [M] in [0, 1]."""
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1) / math.log(logits.size(-1))


def teacher_margin(logits: Tensor) -> Tensor:
    """d_g = 1 − (top-1 − top-2 teacher probability): [M, C] → [M]."""
    top = torch.softmax(logits, -1).topk(2, dim=-1).values
    return 1 - (top[:, 0] - top[:, 1])


def size_rank(num_nodes: Tensor, num_edges: Tensor) -> Tensor:
    """d_g = normalised rank of n_g + |E_g| (small, sparse graphs first): [M] → [M] in [0, 1]."""
    score = (num_nodes + num_edges).double()
    rank = torch.empty_like(score)
    rank[score.argsort(stable=True)] = torch.arange(score.numel(), dtype=torch.double)
    return (rank / max(score.numel() - 1, 1)).float()


def student_kl(z_t: Tensor, z_s: Tensor, tau: float) -> Tensor:
    """d_g = KL(p_T^τ ‖ p_S^τ) under the current student: [M, C] × 2 → [M]."""
    log_pt, log_ps = torch.log_softmax(z_t / tau, -1), torch.log_softmax(z_s / tau, -1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1)
