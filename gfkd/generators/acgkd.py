"""ACGKD generator: pseudo-graph structure as Binary Concrete variables, optimised through the teacher by
back-propagation ("Adversarial Curriculum Graph-Free Knowledge Distillation for GNNs", arXiv 2504.00540;
acgkd.md §3-§7).

    L_gen = CE(f_T(A, X), y) + β_BN·R_BN + β_oh·H̄(X) + β_deg·R_deg

Structure logits α live on the strict upper triangle (symmetric graphs). The spatial-complexity parameter ξ has
three readings (`xi_mode`): `none` (dense logits), `lowrank` (α = zᵢᵀ diag(w) zⱼ/√r + b, r = ⌈ξ(N − 1)/2⌉) and
`budget` (only the k_g = ⌈ξ·n_g(n_g − 1)/2⌉ pairs with the largest α are candidates; the teacher runs on that edge
list in its weighted sparse form, so no [B, N, N] tensor is built while optimising; α, its gradient and Adam's
moments are the only [B, P] tensors; with `generate.acgkd.checkpoint` the teacher's layers are recomputed in
backward, so its activations are kept one layer at a time).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from gfkd.errors import StageError
from gfkd.generators.base import (FinalGraphs, GenContext, StepLog, best_draw, cosine_factor, degree_features,
                                  degree_input, dense_logits, draw_score, node_mask, target_loss)
from gfkd.generators.bn_stats import BNMatcher, bn_targets
from gfkd.generators.concrete import (concrete_sample, geometric_kappa, logistic_noise, pairs_to_adjacency,
                                      real_pairs, triu_pairs)
from gfkd.generators.degree_histogram import beta_model_logits, sample_degrees, teacher_histogram
from gfkd.generators.features import degree_one_hot, entropy_prior, one_hot_rows


def resolve_xi(ctx: GenContext, n_pad: int) -> tuple[str, float]:
    """(xi_mode, xi) after the `auto` rules of acgkd.md §4."""
    a = ctx.cfg.acgkd
    mode = a.xi_mode if a.xi_mode != "auto" else ("none" if n_pad <= 128 else "budget")
    xi = a.xi if a.xi != "auto" else min(1.0, max(0.02, 3 * ctx.meta["edge_density_mean"]))
    return mode, float(xi)


class _Structure:
    """Structure parameters of one chunk and the pair logits α: [B, P] they define.

    `budget` mode keeps the candidate set as a sorted flat index into α ([K] with K = Σ_g k_g, graph-major) and the
    undirected edge list it induces; everything per step (noise, samples, degrees, message passing, R_deg) is O(K).
    Only α, its gradient and Adam's moments are [B, P]."""

    def __init__(self, ctx: GenContext, num_nodes: Tensor, mode: str, xi: float, gen: torch.Generator,
                 histogram: Tensor | None = None):
        dev = ctx.device
        self.mode, self.xi = mode, xi
        self.start_hist: Tensor | None = None
        self.n = num_nodes
        B, N = len(num_nodes), int(num_nodes.max())
        self.N = N
        self.pmask = real_pairs(num_nodes, N)  # [B, P]
        rho = ctx.init_density(num_nodes, ctx.cfg.acgkd.init_density)  # [B]
        base = torch.logit(rho).unsqueeze(1)
        if mode == "lowrank":
            self.r = max(1, math.ceil(xi * (N - 1) / 2))
            self.z = (torch.randn(B, N, self.r, generator=gen, device=dev) * math.sqrt(0.5)).requires_grad_()
            sign = torch.randint(0, 2, (B, self.r), generator=gen, device=dev).float() * 2 - 1
            self.w = sign.requires_grad_()
            self.b = base.squeeze(1).clone().requires_grad_()
            self.params = [self.z, self.w, self.b]
            self.num_params = int((num_nodes * self.r + self.r + 1).sum())
            return
        P = self.pmask.size(1)
        alpha = torch.randn(B, P, generator=gen, device=dev).mul_(0.5)
        if histogram is not None:  # β-model logits of per-node degrees drawn from the teacher's histogram, + noise
            i, j = triu_pairs(N, dev)
            degrees = sample_degrees(histogram, num_nodes, gen, ctx.cfg.acgkd.degree_coupling)  # [B, N]
            counts = torch.bincount(degrees[node_mask(num_nodes)].long(), minlength=len(histogram)).float()
            self.start_hist = counts / counts.sum()  # [D + 1]
            alpha.add_(beta_model_logits(degrees, num_nodes)[:, i, j].clamp(-12, 12))
        else:
            alpha.add_(base)  # logit(ρ_g) + 0.5·N(0, 1)
        if mode == "budget":
            pairs = num_nodes * (num_nodes - 1) // 2
            self.k = torch.minimum(torch.ceil(xi * pairs.float()).long().clamp(min=1), pairs)
        if mode == "budget" and histogram is None:
            picks = []  # a seeded uniform choice of k_g real pairs per graph
            for g in range(B):
                real = self.pmask[g].nonzero().squeeze(1)
                order = torch.randperm(real.numel(), generator=gen, device=dev)[: int(self.k[g])]
                picks.append(real[order].sort().values + g * P)
            self._set_candidates(torch.cat(picks))
            first = torch.logit((rho / xi).clamp(max=0.95))[self.cand_b]
            alpha.view(-1)[self.flat] = first + 0.5 * torch.randn(self.flat.numel(), generator=gen, device=dev)
        self.alpha = alpha.requires_grad_()
        self.params = [self.alpha]
        self.num_params = int((num_nodes * (num_nodes - 1) // 2).sum())
        if mode == "budget" and histogram is not None:  # candidates: each graph's k_g likeliest pairs of the start
            self.refresh()

    def _set_candidates(self, flat: Tensor) -> None:
        """Candidates as flat indices into α ([K], sorted) and the undirected edge list they induce."""
        P = self.pmask.size(1)
        self.flat = flat
        self.cand_b, p = flat // P, flat % P
        i, j = triu_pairs(self.N, flat.device)
        offset = torch.cumsum(self.n, 0) - self.n
        self.src, self.dst = offset[self.cand_b] + i[p], offset[self.cand_b] + j[p]  # [K] each, src < dst
        self.edge_index = torch.stack([torch.cat([self.src, self.dst]), torch.cat([self.dst, self.src])])  # [2, 2K]
        self.batch = torch.repeat_interleave(torch.arange(len(self.n), device=flat.device), self.n)  # [Σn]

    @property
    def cand(self) -> Tensor:
        """Candidate mask [B, P] (all real pairs outside `budget` mode)."""
        if self.mode != "budget":
            return self.pmask
        mask = torch.zeros_like(self.pmask)
        mask.view(-1)[self.flat] = True
        return mask

    def refresh(self) -> None:
        """Re-select each graph's k_g candidates: the real pairs with the largest α (one graph at a time, so no
        [B, P] copy of α is made)."""
        if self.mode != "budget":
            return
        P = self.pmask.size(1)
        with torch.no_grad():
            picks = []
            for g in range(len(self.n)):
                scores = self.alpha[g].masked_fill(~self.pmask[g], -float("inf"))  # [P]
                picks.append(scores.topk(int(self.k[g]), sorted=False).indices.sort().values + g * P)
            self._set_candidates(torch.cat(picks))

    def logits(self) -> Tensor:
        if self.mode == "lowrank":
            i, j = triu_pairs(self.N, self.z.device)
            full = torch.einsum("bir,br,bjr->bij", self.z, self.w, self.z) / math.sqrt(self.r)
            return full[:, i, j] + self.b.unsqueeze(1)
        return self.alpha

    def candidate_logits(self, alpha: Tensor) -> Tensor:
        """α on the candidate pairs: [K] (`budget` mode)."""
        return alpha.reshape(-1).index_select(0, self.flat)

    def expected_degree(self, alpha: Tensor) -> Tensor:
        """E[mean degree] of each graph under σ(α) over its candidate pairs: [B]."""
        if self.mode == "budget":
            edges = torch.zeros(len(self.n), dtype=alpha.dtype, device=alpha.device)
            edges = edges.index_add(0, self.cand_b, torch.sigmoid(self.candidate_logits(alpha)))
        else:
            edges = (torch.sigmoid(alpha) * self.pmask).sum(1)
        return 2 * edges / self.n

    def expected_node_degrees(self, alpha: Tensor) -> Tensor:
        """E[deg_i] under σ(α) over the candidate pairs, for the real nodes in graph order: [Σ n_g]."""
        if self.mode == "budget":
            p = torch.sigmoid(self.candidate_logits(alpha))
            deg = torch.zeros(int(self.n.sum()), dtype=alpha.dtype, device=alpha.device)
            return deg.index_add(0, self.src, p).index_add(0, self.dst, p)
        adj = pairs_to_adjacency(torch.sigmoid(alpha) * self.pmask, self.N)  # [B, N, N]
        return adj.sum(2)[node_mask(self.n)]

    def expected_edges(self) -> Tensor:
        """E[edges] of each graph under σ(α) over its candidate pairs: [B] (no gradient)."""
        with torch.no_grad():
            return self.expected_degree(self.logits()) * self.n / 2

    def hold_edges(self, target: Tensor) -> None:
        """Shift each graph's pair logits by the one scalar that brings its expected edge count back to target: [B]
        (generate.acgkd.hold_density; the bias b in `lowrank` mode). The order of a graph's logits is kept, so
        `budget` mode's candidates stay the same."""
        with torch.no_grad():
            alpha = self.logits()
            if self.mode == "budget":
                values, group = self.candidate_logits(alpha), self.cand_b
            else:  # every real pair, and the graph it belongs to: [ΣP] each
                values, group = alpha[self.pmask], self.pmask.nonzero(as_tuple=True)[0]
            shift = edge_shift(values, group, target)  # [B]
            if self.mode == "lowrank":
                self.b.add_(shift)
            else:
                self.alpha.add_(shift.unsqueeze(1))

    def to_adjacency(self, values: Tensor) -> Tensor:
        """Candidate pair values [K] → symmetric [B, N, N] (zero elsewhere; `budget` mode, no gradient)."""
        B, N = len(self.n), self.N
        adj = values.new_zeros(B, N, N)
        offset = (torch.cumsum(self.n, 0) - self.n)[self.cand_b]
        i, j = self.src - offset, self.dst - offset
        adj[self.cand_b, i, j] = values
        adj[self.cand_b, j, i] = values
        return adj


def edge_shift(values: Tensor, group: Tensor, target: Tensor, iterations: int = 50) -> Tensor:
    """The shift c: [B] with Σ_{p: group_p = g} σ(values_p + c_g) = target_g for every graph g (values, group: [K];
    target: [B], strictly between 0 and the graph's pair count). Newton's method on a sum of sigmoids, which is
    increasing in c, with steps clipped to ±2 so a flat start cannot overshoot. Warns (RuntimeWarning) if some graph
    is still off its target by more than the tolerance after `iterations` steps."""
    c = torch.zeros(len(target), dtype=values.dtype, device=values.device)
    tolerance = 1e-4 * target.clamp(min=1)
    for step in range(iterations + 1):
        p = torch.sigmoid(values + c[group])
        f = torch.zeros_like(c).index_add_(0, group, p) - target
        if bool((f.abs() <= tolerance).all()):
            return c
        if step == iterations:
            break
        slope = torch.zeros_like(c).index_add_(0, group, p * (1 - p)).clamp(min=1e-6)
        c -= (f / slope).clamp(-2, 2)
    # a fixed text, so that Python's warning filter prints it once, not at every step of a chunk
    warnings.warn(f"generate.acgkd.hold_density: some pseudo-graphs are still off their start's expected edge count "
                  f"after {iterations} Newton steps; their density drifts", RuntimeWarning, stacklevel=2)
    return c


def histogram_w1(p: Tensor, q: Tensor) -> Tensor:
    """Earth mover's distance between two degree histograms p, q: [D + 1], in degrees: Σ_k |P(≤ k) − Q(≤ k)|."""
    return (torch.cumsum(p, 0) - torch.cumsum(q, 0)).abs().sum()


def start_histogram(ctx: GenContext, targets_bn: dict[str, tuple[Tensor, Tensor]], mode: str) -> Tensor | None:
    """The degree histogram the structure starts from, or None for the uniform start logit(ρ_g). `auto` takes the
    teacher's histogram where it can be read (featureless set, GIN teacher with BN, pair logits), else uniform."""
    choice = ctx.cfg.acgkd.init_degrees
    if choice == "uniform":
        return None
    reason = None
    if not ctx.featureless:
        reason = (f"generate.acgkd.init_degrees=teacher reads the degree one-hot input of a featureless set; "
                  f"{ctx.meta.get('dataset')} has node features: use generate.acgkd.init_degrees=uniform")
    elif mode == "lowrank":
        reason = "generate.acgkd.init_degrees=teacher needs pair logits: use generate.acgkd.xi_mode=none or budget"
    else:
        try:
            return teacher_histogram(ctx.teacher, targets_bn, float(ctx.meta["degree_mean"]))
        except ValueError as exc:
            reason = f"generate.acgkd.init_degrees: {exc}"
    if choice == "auto":
        return None
    raise StageError(reason)


def first_layer_weight(ctx: GenContext, teacher_start: bool) -> float:
    """generate.bn_first_weight resolved: `auto` is 1 with the teacher degree start, else 10 (docs/generate.md)."""
    w = ctx.cfg.bn_first_weight
    return float(w) if w != "auto" else (1.0 if teacher_start else 10.0)


def histogram_weight(ctx: GenContext, teacher_start: bool) -> float:
    """generate.acgkd.beta_hist resolved: `auto` is 10 with the teacher degree start, else 0."""
    b = ctx.cfg.acgkd.beta_hist
    return float(b) if b != "auto" else (10.0 if teacher_start else 0.0)


def generate(ctx: GenContext, num_nodes: Tensor, targets: Tensor, gen: torch.Generator, log: StepLog | None = None,
             step_offset: int = 0, confidence: Tensor | None = None) -> FinalGraphs:
    """Optimise one chunk of pseudo-graphs (num_nodes, targets: [B]; confidence: [B] for soft targets, None for
    hard ones) and finalise it."""
    cfg, a = ctx.cfg, ctx.cfg.acgkd
    dev = ctx.device
    num_nodes, targets = num_nodes.to(dev), targets.to(dev)
    confidence = None if confidence is None else confidence.to(dev)
    mask = node_mask(num_nodes)  # [B, N]
    B, N = mask.shape
    mode, xi = resolve_xi(ctx, N)
    targets_bn = bn_targets(ctx.teacher, cfg.bn_target, ctx.bn_eval_stats)
    st = _Structure(ctx, num_nodes, mode, xi, gen, start_histogram(ctx, targets_bn, mode))
    teacher_start = st.start_hist is not None
    phi = None
    groups = [{"params": st.params, "lr": a.lr_structure}]
    num_params = st.num_params
    if not ctx.featureless:
        phi = torch.randn(B, N, ctx.num_features, generator=gen, device=dev).requires_grad_()
        groups.append({"params": [phi], "lr": a.lr_features})
        num_params += int(num_nodes.sum()) * ctx.num_features
    opt = torch.optim.Adam(groups, fused=dev.type in ("cpu", "cuda"))  # fused: no [B, P] temporaries per step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_factor(cfg.iterations))
    matcher = BNMatcher(ctx.teacher, targets_bn, cfg.bn_form, first_layer_weight(ctx, teacher_start))
    start_edges = st.expected_edges() if a.hold_density else None  # [B]
    try:
        for t in range(cfg.iterations):
            kappa = geometric_kappa(t, cfg.iterations, a.kappa0, a.kappa1) if a.kappa_schedule == "geometric" else a.kappa0
            if mode == "budget" and t > 0 and t % a.xi_refresh == 0:
                st.refresh()
            alpha = st.logits()  # [B, P]
            logits, x = _forward(ctx, st, alpha, phi, mask, num_nodes, kappa, gen, hard=a.sample == "st")
            loss, terms = objective(ctx, st, alpha, logits, x, mask, targets, matcher, confidence)
            if not torch.isfinite(loss):
                bad = next(k for k, v in terms.items() if not torch.isfinite(v))
                raise StageError(f"generate: non-finite loss term '{bad}' at step {t}: lower generate.acgkd.lr_structure "
                                 f"or generate.beta_bn, or use generate.bn_form=relative")
            matcher.recording = False  # generate.acgkd.checkpoint recomputes teacher layers in backward
            loss.backward()
            matcher.recording = True
            opt.step()
            if start_edges is not None:
                st.hold_edges(start_edges)
            opt.zero_grad(set_to_none=True)  # no gradient kept through the next forward pass
            sched.step()
            if log is not None and (t % 10 == 0 or t == cfg.iterations - 1):
                log(step_offset + t, {"generate/train/loss": loss.item(), "generate/train/kappa": kappa,
                                      **{f"generate/train/{k}": v.item() for k, v in terms.items()}})
    finally:
        matcher.remove()
    del sched, opt  # Adam's moments are not needed to finalise
    with torch.no_grad():
        return _finalise(ctx, st, phi, mask, num_nodes, targets, gen, num_params, mode, xi, confidence)


def objective(ctx: GenContext, st: _Structure, alpha: Tensor, logits: Tensor, x: Tensor | None, mask: Tensor,
              targets: Tensor, matcher: BNMatcher, confidence: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The generation loss of acgkd.md §7 on one relaxed sample and its terms: CE(z_T, y) + β_BN·R_BN, plus the
    one-hot prior (featureful sets: x is not None) and the degree prior (β_deg, auto: 1 on featureless sets). With
    confidence c: [B] the CE is to soft targets (c on y; generate.confidence_low)."""
    a, cfg = ctx.cfg.acgkd, ctx.cfg
    ce = target_loss(logits, targets, confidence)
    r_bn = matcher.loss()
    loss = ce + cfg.beta_bn * r_bn
    terms = {"ce": ce, "bn": r_bn}
    if x is not None and a.beta_oh > 0:
        terms["oh"] = entropy_prior(x, mask)
        loss = loss + a.beta_oh * terms["oh"]
    beta_deg = a.beta_deg if a.beta_deg != "auto" else (1.0 if ctx.featureless else 0.0)
    if beta_deg > 0:
        d_bar = float(ctx.meta["degree_mean"])
        exp_deg = st.expected_degree(alpha)  # [B], over candidate pairs
        terms["deg"] = ((exp_deg - d_bar) / d_bar).pow(2).mean()
        loss = loss + beta_deg * terms["deg"]
    beta_hist = histogram_weight(ctx, st.start_hist is not None)
    if beta_hist > 0 and st.start_hist is not None:  # W1 between the expected and the start's degree histograms
        hist = degree_one_hot(st.expected_node_degrees(alpha), ctx.max_degree).mean(0)  # [D + 1]
        terms["hist"] = histogram_w1(hist, st.start_hist.to(hist))
        loss = loss + beta_hist * terms["hist"]
    return loss, terms


def _forward(ctx: GenContext, st: _Structure, alpha: Tensor, phi: Tensor | None, mask: Tensor, num_nodes: Tensor,
             kappa: float, gen: torch.Generator, hard: bool) -> tuple[Tensor, Tensor | None]:
    """One relaxed sample through the teacher: logits [B, C] and the feature tensor (dense modes)."""
    B, N = mask.shape
    if st.mode == "budget":  # O(K) noise and samples, the teacher on the candidate edge list
        noise = logistic_noise((st.flat.numel(),), gen, ctx.device)
        w = concrete_sample(st.candidate_logits(alpha), kappa, noise, hard=hard)  # [K]
        x = node_features(ctx, phi, gen)
        return _sparse_logits(ctx, st, w, x, mask, checkpoint=ctx.cfg.acgkd.checkpoint), x
    noise = logistic_noise(alpha.shape, gen, ctx.device)
    adj = pairs_to_adjacency(concrete_sample(alpha, kappa, noise, hard=hard) * st.pmask, N)  # [B, N, N]
    x = node_features(ctx, phi, gen)
    return dense_logits(ctx, x, adj, mask), x  # x None: degree features, projected inside


def node_features(ctx: GenContext, phi: Tensor | None, gen: torch.Generator, final: bool = False) -> Tensor | None:
    """X from the feature logits Φ: [B, N, F] (None for featureless sets). `softmax`: softmax(Φ) while optimising,
    one-hot argmax when final; `gumbel_st`: a hard one-hot sample forward, Gumbel-softmax (τ = 1) backward."""
    if phi is None:
        return None
    if ctx.cfg.acgkd.features == "softmax":
        return one_hot_rows(phi) if final else F.softmax(phi, -1)
    u = torch.rand(phi.shape, generator=gen, device=phi.device).clamp(1e-10, 1 - 1e-10)
    soft = F.softmax(phi - torch.log(-torch.log(u)), -1)
    hard = one_hot_rows(soft)
    return hard if final else hard + (soft - soft.detach())


def _finalise(ctx: GenContext, st: _Structure, phi: Tensor | None, mask: Tensor, num_nodes: Tensor, targets: Tensor,
              gen: torch.Generator, num_params: int, mode: str, xi: float, confidence: Tensor | None = None) -> FinalGraphs:
    """best_of_k: k hard draws per graph, keep the one the teacher gives the highest target probability (soft
    targets: the lowest CE to them)."""
    a = ctx.cfg.acgkd
    alpha = st.logits()
    N = mask.size(1)
    k = 1 if a.finalize != "best_of_k" else a.final_draws
    if mode == "budget":  # draws, scores and probabilities on the candidate list; dense only for the output
        cand_alpha = st.candidate_logits(alpha)  # [K]
        if a.finalize == "mode":
            draws = [(cand_alpha > 0).float()]
        else:
            draws = [(cand_alpha + logistic_noise(cand_alpha.shape, gen, ctx.device) > 0).float() for _ in range(k)]
        feats = [node_features(ctx, phi, gen, final=True) for _ in draws]  # one feature draw per structure draw
        feats = [None if x is None else x * mask.unsqueeze(-1) for x in feats]
        best_w, best_x = _best_sparse_draw(ctx, st, draws, feats, mask, targets, confidence)
        best_adj = st.to_adjacency(best_w)
        prob = st.to_adjacency(torch.sigmoid(cand_alpha))
        candidates = st.flat.numel() / len(num_nodes)
    else:
        prob = pairs_to_adjacency(torch.sigmoid(alpha) * st.pmask, N)
        if a.finalize == "mode":
            draws = [(alpha > 0).float()]
        else:
            draws = [(alpha + logistic_noise(alpha.shape, gen, ctx.device) > 0).float() for _ in range(k)]
        feats = [node_features(ctx, phi, gen, final=True) for _ in draws]
        feats = [None if x is None else x * mask.unsqueeze(-1) for x in feats]
        best_adj, best_x = best_draw(ctx, [(pairs_to_adjacency(d * st.pmask, N), x) for d, x in zip(draws, feats)],
                                     mask, targets, confidence)
        candidates = float(st.pmask.sum(1).float().mean())
    best_x = best_x if best_x is not None else degree_features(best_adj, mask, ctx.max_degree)
    info = {"xi": xi, "xi_mode_budget": float(mode == "budget"), "xi_mode_lowrank": float(mode == "lowrank"),
            "candidates_per_graph": float(candidates)}
    state = {name: t.detach().cpu() for name, t in (("alpha", getattr(st, "alpha", None)), ("z", getattr(st, "z", None)),
                                                    ("w", getattr(st, "w", None)), ("b", getattr(st, "b", None)),
                                                    ("candidates", st.cand if mode == "budget" else None),
                                                    ("phi", phi)) if t is not None}
    return FinalGraphs(num_nodes=num_nodes, adj=best_adj, edge_prob=prob, x=best_x, targets=targets,
                       gen_step=ctx.cfg.iterations, num_params=num_params, info=info,
                       state={**state, "num_nodes": num_nodes.cpu(), "targets": targets.cpu()})


def _sparse_logits(ctx: GenContext, st: _Structure, w: Tensor, x: Tensor | None, mask: Tensor,
                   checkpoint: bool = False) -> Tensor:
    """The weighted sparse teacher on the candidate edges with pair values w: [K] (both directions), node features
    x: [B, N, F] or None (degree input from the weighted degrees) → logits [B, C]."""
    weight = torch.cat([w, w])
    if x is None:
        deg = torch.zeros(int(st.n.sum()), dtype=w.dtype, device=w.device).index_add(0, st.edge_index[1], weight)
        x_nodes, projected = degree_input(ctx, deg)
    else:
        x_nodes, projected = x[mask], False
    return ctx.teacher(x_nodes, st.edge_index, st.batch, len(st.n), edge_weight=weight, projected=projected,
                       checkpoint=checkpoint)


def _best_sparse_draw(ctx: GenContext, st: _Structure, draws: list[Tensor], feats: list[Tensor | None],
                      mask: Tensor, targets: Tensor, confidence: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Per graph, the draw (candidate pair values [K], features [B, N, F] or None) with the highest teacher
    probability of the target (soft targets: `draw_score`), scored by the weighted sparse teacher on the candidate
    edges."""
    best, best_x, best_p = None, None, None
    for d, x_dense in zip(draws, feats):
        logits = _sparse_logits(ctx, st, d, x_dense, mask)
        prob = draw_score(logits, targets, confidence)  # [B]
        if best is None:
            best, best_x, best_p = d, x_dense, prob
            continue
        better = prob > best_p
        best = torch.where(better[st.cand_b], d, best)
        best_x = None if x_dense is None else torch.where(better[:, None, None], x_dense, best_x)
        best_p = torch.maximum(prob, best_p)
    return best, best_x
