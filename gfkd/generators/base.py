"""What every generator shares: the context it runs in, the finalised graphs it returns, the teacher's verdict.

A generator turns one chunk of the bank (node counts and targets) into `FinalGraphs`: padded 0/1 adjacencies,
one-hot (or degree) features, edge probabilities and the count of optimised scalars. `teacher_verdict` then runs
the teacher in its sparse form on the finalised graphs (logits, and difficulty = H(p_T)/log C, acgkd.md §10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gfkd.config import GenerateConfig
from gfkd.generators.features import degree_one_hot, degree_projection
from gfkd.models import DenseTwin, GraphClassifier
from gfkd.models.size_buckets import size_buckets

StepLog = Callable[[int, dict[str, float]], None]


@dataclass
class GenContext:
    """The teacher and its metadata: all a data-free generator may read (acgkd.md §2)."""

    teacher: GraphClassifier  # eval mode, frozen
    meta: dict  # teacher.json "data": F, C, feature kind, D, node-count histogram, density, degree
    bn_eval_stats: dict[str, Tensor]
    cfg: GenerateConfig
    device: torch.device

    def __post_init__(self) -> None:
        self.teacher.eval().requires_grad_(False)
        self.twin = DenseTwin(self.teacher)
        self._buckets: tuple[Tensor, list | None] | None = None

    def buckets(self, mask: Tensor) -> list[tuple[Tensor, int]] | None:
        """The size buckets of this padded batch (`generate.size_buckets`), kept while the same mask comes back: a
        chunk's node counts are fixed for its whole optimisation."""
        if self._buckets is None or self._buckets[0] is not mask:
            self._buckets = (mask, size_buckets(mask.sum(1), self.cfg.size_buckets))
        return self._buckets[1]

    @property
    def num_features(self) -> int:
        return int(self.meta["num_features"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def featureless(self) -> bool:
        return self.meta["feature_kind"] == "degree"

    @property
    def max_degree(self) -> int:
        return int(self.meta["max_degree"])

    def init_density(self, num_nodes: Tensor, value: str | float = "auto") -> Tensor:
        """ρ_g = clamp(d̄/(n_g − 1), 1e-3, 0.95) (acgkd.md §3), or one fixed density: [B]."""
        if value != "auto":
            return torch.full(num_nodes.shape, float(value), device=num_nodes.device)
        return (self.meta["degree_mean"] / (num_nodes.float() - 1).clamp(min=1)).clamp(1e-3, 0.95)


@dataclass
class FinalGraphs:
    """A finalised chunk, padded to N nodes."""

    num_nodes: Tensor  # [B]
    adj: Tensor  # [B, N, N] 0/1; adj[b, i, j] = 1 is an edge i → j (symmetric unless directed)
    edge_prob: Tensor  # [B, N, N] the generator's probability of each edge
    x: Tensor  # [B, N, F] one-hot rows (degree one-hot for featureless sets); zero on padding
    targets: Tensor  # [B] label column (target, or teacher argmax for RandG)
    gen_step: int  # the iteration the stored parameters come from
    num_params: int  # optimised scalars on real nodes (padding excluded)
    info: dict[str, float] = field(default_factory=dict)
    state: dict[str, Tensor] = field(default_factory=dict)  # the generator's parameters, saved beside the shard

    @property
    def mask(self) -> Tensor:
        return torch.arange(self.adj.size(1), device=self.adj.device) < self.num_nodes.unsqueeze(1)


def sidecar_name(shard: str, kind: str, suffix: str) -> str:
    """The file beside shard `shard-<bank>-<chunk>.parquet` that holds its `kind`: `_<kind>-<bank>-<chunk><suffix>`."""
    return f"_{kind}-" + shard.removeprefix("shard-").removesuffix(".parquet") + suffix


def state_name(shard: str) -> str:
    """The file beside a shard that holds its generator's parameters."""
    return sidecar_name(shard, "state", ".pt")


def node_mask(num_nodes: Tensor) -> Tensor:
    """num_nodes: [B] → mask [B, N], N = max n."""
    return torch.arange(int(num_nodes.max()), device=num_nodes.device) < num_nodes.unsqueeze(1)


def edge_mask(num_nodes: Tensor, n: int, directed: bool) -> Tensor:
    """[B, N, N]: entries that are edge variables (real endpoints, off-diagonal; i < j when undirected)."""
    real = torch.arange(n, device=num_nodes.device) < num_nodes.unsqueeze(1)
    m = real.unsqueeze(2) & real.unsqueeze(1) & ~torch.eye(n, dtype=torch.bool, device=num_nodes.device)
    return m if directed else m & torch.ones(n, n, dtype=torch.bool, device=num_nodes.device).triu(1)


def degree_features(adj: Tensor, mask: Tensor, max_degree: int) -> Tensor:
    """Degree one-hot of a 0/1 adjacency (adj[b, i, j]: edge i → j; in-degree = column sums) → [B, N, D + 1],
    exact, zero on padding, built by one scatter (no gradient; soft degrees go through `degree_input`)."""
    deg = adj.detach().sum(1).round().long().clamp(max=max_degree)  # [B, N]
    x = adj.new_zeros(*deg.shape, max_degree + 1)
    return x.scatter_(-1, deg.unsqueeze(-1), mask.unsqueeze(-1).to(x.dtype))  # 1 on real nodes, 0 on padding


def dense_logits(ctx: GenContext, x: Tensor | None, adj: Tensor, mask: Tensor, bucketed: bool = False) -> Tensor:
    """The teacher on padded graphs; adj[b, i, j] is an edge i → j, so node j aggregates column j. With x = None
    (featureless sets) the features are the degree one-hot of adj, fed as its projection (`degree_input`).
    `bucketed`: in the node-count groups of `generate.size_buckets` (the GFKD family, whose iterations are mostly
    teacher forwards; ACGKD's are not, and it keeps one padded batch: docs/benchmarks/size-buckets.md)."""
    buckets = ctx.buckets(mask) if bucketed else None
    if x is None:
        x, projected = degree_input(ctx, adj.sum(1), mask)
        return ctx.twin(x, adj.transpose(1, 2), mask, projected=projected, buckets=buckets)
    return ctx.twin(x, adj.transpose(1, 2), mask, buckets=buckets)


def degree_input(ctx: GenContext, deg: Tensor, mask: Tensor | None = None) -> tuple[Tensor, bool]:
    """The teacher's input for (soft) degrees deg: [...]: the first layer's projection of their one-hot
    ([..., H], projected=True) when the teacher has one, else the one-hot itself ([..., D + 1], False)."""
    w = ctx.teacher.first_projection()
    x = degree_one_hot(deg, ctx.max_degree) if w is None else degree_projection(deg, w, ctx.max_degree)
    if mask is not None:
        x = x * mask.unsqueeze(-1)
    return x, w is not None


@torch.no_grad()
def teacher_verdict(ctx: GenContext, g: FinalGraphs) -> tuple[Tensor, Tensor]:
    """Teacher logits [B, C] on the finalised graphs (sparse form) and difficulty [B] = H(p_T)/log C."""
    mask = g.mask
    b, i, j = g.adj.nonzero(as_tuple=True)
    offset = torch.cumsum(g.num_nodes, 0) - g.num_nodes
    edge_index = torch.stack([offset[b] + i, offset[b] + j])
    batch = torch.repeat_interleave(torch.arange(len(g.num_nodes), device=g.adj.device), g.num_nodes)
    logits = ctx.teacher(g.x[mask], edge_index, batch, len(g.num_nodes))
    p = F.softmax(logits, -1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    return logits, entropy / math.log(ctx.num_classes)


def cosine_factor(total: int, floor: float = 0.01) -> Callable[[int], float]:
    """LR multiplier: cosine decay from 1 to `floor` over `total` steps."""
    return lambda t: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))


def soft_targets(targets: Tensor, confidence: Tensor, num_classes: int) -> Tensor:
    """[B, C] target distributions: confidence c: [B] on the label targets: [B], (1 − c)/(C − 1) on each other class."""
    rest = ((1 - confidence) / (num_classes - 1)).unsqueeze(1)  # [B, 1]
    return rest.expand(-1, num_classes).scatter(1, targets.unsqueeze(1), confidence.unsqueeze(1))


def target_loss(logits: Tensor, targets: Tensor, confidence: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """The generator's CE term: CE(z [B, C], y [B]), or with per-graph confidence c: [B] the CE to the soft targets,
    whose minimum is the teacher giving the label probability c (generate.confidence_low)."""
    if confidence is None:
        return F.cross_entropy(logits, targets, reduction=reduction)
    return F.cross_entropy(logits, soft_targets(targets, confidence.to(logits), logits.size(1)), reduction=reduction)


def draw_score(logits: Tensor, targets: Tensor, confidence: Tensor | None = None) -> Tensor:
    """[B], higher is better: the teacher's target probability (hard targets), or minus the CE to the soft targets,
    so best-of-k keeps the draw closest to the confidence asked for."""
    if confidence is None:
        return F.softmax(logits, -1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return -target_loss(logits, targets, confidence, reduction="none")


@torch.no_grad()
def best_draw(ctx: GenContext, draws: list[tuple[Tensor, Tensor]], mask: Tensor, targets: Tensor,
              confidence: Tensor | None = None, bucketed: bool = False) -> tuple[Tensor, Tensor]:
    """Per graph, the (adj [B, N, N], x [B, N, F] or None for degree features) draw to which the teacher gives the
    highest target probability (with soft targets: the lowest CE to them, `draw_score`)."""
    best_adj, best_x, best_p = None, None, None
    for adj, x in draws:
        p = draw_score(dense_logits(ctx, x, adj, mask, bucketed), targets, confidence)  # [B]
        if best_adj is None:
            best_adj, best_x, best_p = adj, x, p
            continue
        better = (p > best_p)[:, None, None]
        best_adj = torch.where(better, adj, best_adj)
        best_x = None if x is None else torch.where(better, x, best_x)
        best_p = torch.maximum(p, best_p)
    return best_adj, best_x
