"""Size buckets: a padded batch of graphs split into a few groups of similar node counts, so that the dense
[B, N, N] work of a teacher forward is paid on each group's own largest graph instead of the batch's.

A chunk of PROTEINS pseudo-graphs holds n from 4 to 256 (mean 39): padded to 256, Σ_g n_g² is 5 % of B·256², so 95 %
of the dense aggregation multiplies padding. Grouping the sorted counts into at most k contiguous groups that
minimise Σ_groups |group|·n_max² removes most of it; the graphs themselves, their order in the output and every real
node's value are unchanged (tests/models/test_dense.py).

    >>> size_buckets(torch.tensor([4, 250, 5, 6]), 2)   # [(tensor([0, 2, 3]), 6), (tensor([1]), 250)]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MIN_SAVING = 0.2  # below this share of the padded work saved, keep one padded batch (the same floats as before)


def size_buckets(num_nodes: Tensor, max_buckets: int) -> list[tuple[Tensor, int]] | None:
    """Groups of graph indices with their node-count bound n_max, for `max_buckets` ≥ 2; None when one padded batch is
    as good (saves under `MIN_SAVING` of B·N² or max_buckets = 1).

    Args:
        num_nodes: [B] node counts.
    Returns:
        [(indices [B_b] ascending, n_max)] covering 0..B−1 once, or None.
    """
    counts = num_nodes.tolist()
    if max_buckets < 2 or len(counts) < 2:
        return None
    sizes, per_size = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)  # ascending distinct sizes
    before = np.concatenate([[0], np.cumsum(per_size)])  # graphs with a size below sizes[j]
    sq = sizes.astype(np.float64) ** 2
    d = len(sizes)
    # exact[k][j]: least work covering sizes[: j + 1] in exactly k + 1 groups; cut[k][j]: where its last group starts
    cost = (before[1:][None, :] - before[:-1][:, None]) * sq[None, :]  # [i, j]: sizes i..j as one group
    cost = np.where(np.triu(np.ones((d, d), dtype=bool)), cost, np.inf)
    exact, cut = [cost[0]], [np.zeros(d, dtype=np.int64)]
    for _ in range(1, min(max_buckets, d)):
        trial = np.concatenate([np.full((1, d), np.inf), exact[-1][:-1, None] + cost[1:]])  # [i, j]: last group i..j
        cut.append(trial.argmin(0))
        exact.append(trial.min(0))
    k = int(np.argmin([e[-1] for e in exact]))
    if exact[k][-1] > (1 - MIN_SAVING) * len(counts) * sq[-1]:
        return None
    ends, j = [], d - 1
    for level in range(k, -1, -1):  # walk the cuts back from the largest size
        ends.append(j)
        j = int(cut[level][j]) - 1
    bounds = [int(sizes[e]) for e in reversed(ends)]
    n = num_nodes.cpu()
    groups, low = [], -1
    for bound in bounds:
        idx = torch.nonzero((n > low) & (n <= bound)).flatten().to(num_nodes.device)
        if idx.numel():
            groups.append((idx, bound))
        low = bound
    return groups if len(groups) > 1 else None
