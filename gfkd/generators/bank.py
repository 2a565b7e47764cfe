"""The pseudo-graph bank shared by every generator (acgkd.md §2): node counts, targets, chunks, seeds.

Node counts come from the teacher's metadata (never from the dataset): drawn with replacement from the training
node-count histogram (`empirical`), uniform on [max(4, ⌊0.5·n̄⌋), ⌈1.5·n̄⌉] (`uniform`) or on an explicit
range (`range`, GFKD's MUTAG parity [10, 29]); counts above `max_nodes` are clamped.
Targets are balanced (g mod C, then a seeded shuffle), i.i.d. uniform, or `prior`: the class shares of the teacher's
training set (the metadata's class counts, apportioned to M by largest remainder, then a seeded shuffle; the class
counts are outside protocol.md §1's data-free list, so `prior` is a diagnostic, not a data-free setting). With
`confidence_low` below 1, each graph also gets a target confidence c ~ U(max(confidence_low, 1/C), 1), the teacher
probability its label should reach (soft targets; drawn from a generator of its own, so the rest of the plan is the
same as with hard targets). A bank of M graphs is cut into
⌈M / batch_size⌉ chunks that each mix node counts (graphs sorted by size are dealt round-robin) and are sorted
inside, so that each chunk's BN statistics span all sizes; the teacher's dense forward then runs in node-count
groups (`generate.size_buckets`, gfkd/models/size_buckets.py), so the few largest graphs do not set the padding of
the whole chunk. Every random draw comes from a
torch.Generator seeded by `derive_seed(seed, bank, ...)`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple (run seed, bank index, chunk index, purpose...)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(*parts: int | str, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))


@dataclass(frozen=True)
class BankPlan:
    num_nodes: Tensor  # [M] long, after clamping
    targets: Tensor  # [M] long in 0..C-1
    chunks: list[Tensor]  # index lists into the bank, each sorted by node count
    clamped: int  # how many counts were clamped to max_nodes
    confidence: Tensor | None = None  # [M] float in [1/C, 1]: soft-target confidence; None: hard targets


def prior_counts(meta: dict, total: int) -> Tensor:
    """`total` split over the classes in the shares of the metadata's training class counts [C] (largest remainder;
    ties to the lower class), so the counts sum to `total` and each is within 1 of its share."""
    if "class_counts" not in meta:
        raise ValueError("targets = prior needs class_counts in the teacher's metadata: retrain the teacher")
    counts = torch.tensor(meta["class_counts"], dtype=torch.float64)
    share = counts / counts.sum() * total
    n = share.floor().long()
    rest = total - int(n.sum())
    if rest:
        order = sorted(range(len(n)), key=lambda c: (-(share[c] - n[c]).item(), c))
        n[order[:rest]] += 1
    return n


def plan_bank(meta: dict, num_graphs: int, seed: int, bank: int, nodes: str = "empirical", targets: str = "balanced",
              max_nodes: int = 256, batch_size: int = 256, node_range: tuple[int, int] = (10, 29),
              confidence_low: float = 1.0) -> BankPlan:
    """Node counts, targets and chunks of bank `bank` from the teacher's data metadata `meta`."""
    g = make_generator(seed, bank, "plan")
    if nodes == "empirical":
        hist = meta["node_count_hist"]
        values = torch.tensor([int(k) for k in hist], dtype=torch.long)
        weights = torch.tensor([float(v) for v in hist.values()])
        n = values[torch.multinomial(weights, num_graphs, replacement=True, generator=g)]
    else:
        mean = meta["nodes_mean"]
        lo, hi = (max(4, math.floor(0.5 * mean)), math.ceil(1.5 * mean)) if nodes == "uniform" else node_range
        n = torch.randint(lo, hi + 1, (num_graphs,), generator=g)
    clamped = int((n > max_nodes).sum())
    n = n.clamp(min=2, max=max_nodes)
    C = int(meta["num_classes"])
    if targets == "balanced":
        y = torch.arange(num_graphs) % C
        y = y[torch.randperm(num_graphs, generator=g)]
    elif targets == "prior":
        y = torch.repeat_interleave(torch.arange(C), prior_counts(meta, num_graphs))
        y = y[torch.randperm(num_graphs, generator=g)]
    else:
        y = torch.randint(0, C, (num_graphs,), generator=g)
    num_chunks = math.ceil(num_graphs / batch_size)
    order = torch.argsort(n, stable=True)
    chunks = []
    for c in range(num_chunks):
        idx = order[c::num_chunks]
        chunks.append(idx[torch.argsort(n[idx], stable=True)])
    confidence = None
    if confidence_low < 1:
        lo = max(confidence_low, 1 / C)
        confidence = lo + (1 - lo) * torch.rand(num_graphs, generator=make_generator(seed, bank, "confidence"))
    return BankPlan(num_nodes=n, targets=y, chunks=chunks, clamped=clamped, confidence=confidence)
