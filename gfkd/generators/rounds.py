"""Adversarial rounds (acgkd.md §7, `schedule = alternate`): before each distill epoch, a few generator steps on the
saved ACGKD parameters move the pseudo-graphs to where the current student still disagrees with the teacher; the
graphs are then re-finalised and replace that epoch's training set (nothing is appended).

Per chunk of the generate stage (its `_state-*.pt`: α or Z/w/b, Φ, node counts, targets), per step, at κ = κ_1 and
Adam at `lr_scale` (1 %) of the generation learning rates, with the student frozen in eval mode:

    L = CE(z_T, y) + β_BN·R_BN + β_oh·H̄(X) + β_deg·R_deg − β_adv·D(p_T ‖ p_S)

D = JS [default], KL or L1 between the teacher's and the student's class probabilities, mean over the chunk's graphs.
Both networks see the same straight-through sample (whatever `generate.acgkd.sample` says), dense also in `budget`
mode (the candidate set is the saved one, never refreshed): the teacher through its dense twin, the student's
message-passing body densely as well (so the gradient reaches α through the adjacency), a widened student's
projector on the sampled edges. The generator state carries over from round to round. Only the teacher and the
generator's own parameters are read: no real graph.

With `steps = 0` the same class is `distill.resample` (acgkd.md §11): every epoch a fresh finalisation (best of
`final_draws` hard samples) of each saved generator, which never moves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gfkd.config import GenerateConfig
from gfkd.errors import CheckpointError, StageError
from gfkd.generators.acgkd import (_finalise, _Structure, first_layer_weight, node_features, objective, resolve_xi,
                                   start_histogram)
from gfkd.generators.base import GenContext, dense_logits, node_mask, state_name, teacher_verdict
from gfkd.generators.bn_stats import BNMatcher, bn_targets
from gfkd.generators.concrete import concrete_sample, logistic_noise, pairs_to_adjacency
from gfkd.generators.features import degree_one_hot
from gfkd.io.checkpoint import load_training_state
from gfkd.models import DenseTwin, GraphClassifier
from gfkd.models.widened import WidenedStudent


def divergence(p_t: Tensor, p_s: Tensor, kind: str) -> Tensor:
    """Mean over graphs of D(p_T ‖ p_S) for class probabilities p_t, p_s: [B, C]; kind = js | kl | l1."""
    eps = 1e-8
    if kind == "l1":
        return (p_t - p_s).abs().sum(-1).mean()
    if kind == "kl":
        return (p_t * ((p_t + eps).log() - (p_s + eps).log())).sum(-1).mean()
    m = 0.5 * (p_t + p_s)
    kl = lambda a: (a * ((a + eps).log() - (m + eps).log())).sum(-1)  # noqa: E731
    return (0.5 * kl(p_t) + 0.5 * kl(p_s)).mean()


def student_dense_logits(student: nn.Module, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
    """A student on padded graphs (x: [B, N, F], adj: [B, N, N] symmetric, mask: [B, N]) → logits [B, C]; the
    message-passing body runs as a dense twin (differentiable in adj), a widened student's projector on the edges of
    adj."""
    if not isinstance(student, WidenedStudent):
        return DenseTwin(student.net)(x, adj, mask)
    nodes = DenseTwin(student).node_embeddings(x, adj, mask)[mask]  # [Σn, d_S]: the body's convs and residuals
    b, i, j = (adj.detach() > 0.5).nonzero(as_tuple=True)
    counts = mask.sum(1)
    offset = torch.cumsum(counts, 0) - counts
    edge_index = torch.stack([offset[b] + i, offset[b] + j])
    proj = student.projector(nodes, edge_index)  # [Σn, d_T]
    batch = torch.repeat_interleave(torch.arange(len(counts), device=adj.device), counts)
    return student.head(scatter(proj, batch, dim=0, dim_size=len(counts), reduce=student.pooling))


class _Chunk:
    """One chunk's generator, restored from its saved state, with its own Adam."""

    def __init__(self, ctx: GenContext, state: dict[str, Tensor], lr_scale: float, gen: torch.Generator, key: str):
        dev, a = ctx.device, ctx.cfg.acgkd
        self.num_nodes, self.targets = state["num_nodes"].to(dev), state["targets"].to(dev)
        self.mask = node_mask(self.num_nodes)
        self.mode, self.xi = resolve_xi(ctx, self.mask.size(1))
        st = _Structure(ctx, self.num_nodes, self.mode, self.xi, gen)  # then overwritten by the saved parameters
        with torch.no_grad():
            for name in ("alpha", "z", "w", "b"):
                if name in state:
                    getattr(st, name).copy_(state[name].to(dev))
        if self.mode == "budget":
            if "candidates" not in state:
                raise StageError(f"{key}: a budget-mode generator state has no candidate set: "
                                 "rerun the generate stage with this generate config")
            st._set_candidates(state["candidates"].to(dev).reshape(-1).nonzero().squeeze(1))
        self.st = st
        self.phi = state["phi"].to(dev).clone().requires_grad_() if "phi" in state else None
        groups = [{"params": st.params, "lr": a.lr_structure * lr_scale}]
        if self.phi is not None:
            groups.append({"params": [self.phi], "lr": a.lr_features * lr_scale})
        self.opt = torch.optim.Adam(groups)


class AdversarialRounds:
    """The generator side of `distill.adversarial` (and of `distill.resample`, steps = 0): `step(student)` runs the
    rounds and returns the new graphs."""

    def __init__(self, teacher: GraphClassifier, data_meta: dict, bn_eval: dict[str, Tensor], gcfg: GenerateConfig,
                 states: list[dict[str, Tensor]], *, steps: int, beta: float, div: str, lr_scale: float, seed: int,
                 device: torch.device, key: str = "distill.adversarial.rounds"):
        if gcfg.method != "acgkd":
            raise StageError(f"{key} needs ACGKD banks (generate.method=acgkd): the other "
                             "generators save no Binary Concrete parameters to continue from")
        if not states:
            raise StageError(f"{key}: the generate stage saved no generator state "
                             "(_state-*.pt beside the shards): rerun it with gfkd run --force generate")
        self.ctx = GenContext(teacher, data_meta, {k: v.to(device) for k, v in bn_eval.items()}, gcfg, device)
        self.steps, self.beta, self.div = steps, beta, div
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.chunks = [_Chunk(self.ctx, s, lr_scale, self.gen, key) for s in states]
        # the same for every chunk; resample (steps = 0) takes no generator step, so it needs none
        self.bn_targets = bn_targets(teacher, gcfg.bn_target, self.ctx.bn_eval_stats) if steps else None
        # layer 1's R_BN weight as generate used it, per ξ mode (the teacher start needs pair logits)
        self.first_weight = {m: first_layer_weight(self.ctx, start_histogram(self.ctx, self.bn_targets, m) is not None)
                             for m in {c.mode for c in self.chunks}} if steps else None
        self.generator_steps = 0

    def step(self, student: nn.Module) -> tuple[list[Data], dict[str, float]]:
        """`steps` generator steps per chunk against `student` (eval, frozen), then re-finalised graphs with the
        teacher's logits and difficulty; and the round's mean CE, R_BN and divergence (none when steps = 0)."""
        was_training = student.training
        student.eval()
        grads = [p.requires_grad for p in student.parameters()]
        student.requires_grad_(False)
        sums = {"ce": 0.0, "bn": 0.0, "div": 0.0}
        graphs: list[Data] = []
        try:
            for c in self.chunks:
                if self.steps:  # resample (steps = 0) only re-finalises
                    self._move(c, student, sums)
                graphs += self._finalise(c)
        finally:
            for p, g in zip(student.parameters(), grads):
                p.requires_grad_(g)
            student.train(was_training)
        return graphs, sums if self.steps else {}

    def _move(self, c: _Chunk, student: nn.Module, sums: dict[str, float]) -> None:
        """`steps` generator steps of chunk `c` against the frozen `student`; adds each step's share of the mean
        CE, R_BN and divergence to `sums`."""
        ctx, cfg = self.ctx, self.ctx.cfg
        matcher = BNMatcher(ctx.teacher, self.bn_targets, cfg.bn_form, self.first_weight[c.mode])
        try:
            for _ in range(self.steps):
                alpha = c.st.logits()
                x, adj = self._sample(c, alpha)
                z_t = dense_logits(ctx, x, adj, c.mask)
                loss, terms = objective(ctx, c.st, alpha, z_t, x, c.mask, c.targets, matcher)
                x_s = x if x is not None else degree_one_hot(adj.sum(1), ctx.max_degree)
                z_s = student_dense_logits(student, x_s, adj, c.mask)
                d = divergence(F.softmax(z_t, -1), F.softmax(z_s, -1), self.div)
                loss = loss - self.beta * d
                matcher.recording = False
                c.opt.zero_grad(set_to_none=True)
                loss.backward()
                matcher.recording = True
                c.opt.step()
                self.generator_steps += 1
                for k, v in (("ce", terms["ce"]), ("bn", terms["bn"]), ("div", d)):
                    sums[k] += float(v.detach()) / (self.steps * len(self.chunks))
        finally:
            matcher.remove()

    def _sample(self, c: _Chunk, alpha: Tensor) -> tuple[Tensor | None, Tensor]:
        """One straight-through sample at κ_1: node features [B, N, F] (None: degree) and adjacency [B, N, N]."""
        ctx, N = self.ctx, c.mask.size(1)
        kappa = ctx.cfg.acgkd.kappa1
        if c.mode == "budget":
            noise = logistic_noise(c.st.flat.shape, self.gen, ctx.device)
            values = concrete_sample(c.st.candidate_logits(alpha), kappa, noise)
            adj = _scatter_pairs(c.st, values)
        else:
            noise = logistic_noise(alpha.shape, self.gen, ctx.device)
            adj = pairs_to_adjacency(concrete_sample(alpha, kappa, noise) * c.st.pmask, N)
        return node_features(ctx, c.phi, self.gen), adj

    @torch.no_grad()
    def _finalise(self, c: _Chunk) -> list[Data]:
        final = _finalise(self.ctx, c.st, c.phi, c.mask, c.num_nodes, c.targets, self.gen, 0, c.mode, c.xi)
        logits, difficulty = teacher_verdict(self.ctx, final)
        out = []
        for g in range(len(final.num_nodes)):
            n = int(final.num_nodes[g])
            ei = final.adj[g, :n, :n].nonzero().t()
            out.append(Data(x=final.x[g, :n].cpu(), edge_index=ei.cpu(), y=final.targets[g].view(1).cpu(),
                            num_nodes=n, teacher_logits=logits[g].view(1, -1).cpu(),
                            difficulty=difficulty[g].view(1).cpu()))
        return out


def _scatter_pairs(st: _Structure, values: Tensor) -> Tensor:
    """Candidate pair values [K] → symmetric [B, N, N], differentiable (budget mode)."""
    B, N = len(st.n), st.N
    offset = (torch.cumsum(st.n, 0) - st.n)[st.cand_b]
    i, j = st.src - offset, st.dst - offset
    flat = (st.cand_b * N + i) * N + j
    adj = values.new_zeros(B * N * N).index_add(0, flat, values).view(B, N, N)
    return adj + adj.transpose(1, 2)


def load_states(shard_dir: Path, key: str = "distill.adversarial.rounds") -> list[dict[str, Tensor]]:
    """The ACGKD generator states saved beside the shards, in shard order; a StageError (naming the option `key` that
    needs them) when the shards are another generator's, or a shard has no state, or a state lacks its structure
    parameters."""
    shard_dir = Path(shard_dir)
    manifest = json.loads((shard_dir / "_manifest.json").read_text())
    if manifest.get("generator") != "acgkd":
        raise StageError(f"{key} needs ACGKD banks; {shard_dir} holds "
                         f"{manifest.get('generator')} shards: generate with generate.method=acgkd")
    shards = sorted(shard_dir.glob("shard-*.parquet"))
    states = [shard_dir / state_name(p.name) for p in shards]
    missing = [p.name for p in states if not p.is_file()]
    if missing:
        raise StageError(f"{key}: {shard_dir} has no generator state {missing[0]} (and "
                         f"{len(missing) - 1} more): rerun the generate stage (gfkd run --force generate)")
    try:
        out = [load_training_state(p, "generator state", "rerun the generate stage (gfkd run --force generate)")
               for p in states]
    except CheckpointError as exc:
        raise StageError(f"{key}: {exc}") from exc
    for p, st in zip(states, out):
        if not ({"alpha"} <= set(st) or {"z", "w", "b"} <= set(st)):
            raise StageError(f"{key}: {p} holds no ACGKD structure parameters (alpha or z/w/b)")
    return out
