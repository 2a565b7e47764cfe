"""One student distilled from a frozen teacher on a list of graphs (pseudo-graphs, or real graphs for `kd_real`).

    L_S = L_KD(τ) + γ·L_feat + β_ce·CE(z_S, y)         (acgkd.md §11; gfkd.md §5 with γ = β_ce = 0, τ fixed)

Per epoch: the curriculum admits the easiest ⌈q_e·M⌉ graphs (acgkd.md §10), shuffled with the epoch's seed; the
teacher (eval) gives z_T and its last-layer node embeddings H_T on each batch; the student (train) and its projector
step on Adam with a linear decay to 0; a learnable temperature steps on its own Adam at lr η_t·λ_e. Real validation
and test graphs reach this loop only through `evaluate`, called under no_grad after each epoch for logging and the
secondary (val-selected) checkpoint; the primary result is the last epoch.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import is_undirected
from tqdm import tqdm

from gfkd import curriculum
from gfkd.augment import perturb
from gfkd.config import DistillConfig
from gfkd.errors import StageError
from gfkd.losses.kd import Temperature, kd_kl, ramp
from gfkd.models import GraphClassifier

if TYPE_CHECKING:
    from gfkd.generators.rounds import AdversarialRounds


@dataclass
class DistillResult:
    last_state: dict[str, Tensor]
    best_state: dict[str, Tensor]  # epoch of lowest validation loss (secondary; real validation labels)
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def teacher_outputs(teacher: GraphClassifier, batch) -> tuple[Tensor, Tensor]:
    """The frozen teacher on a batch: logits z_T [B, C] and last-layer node embeddings H_T [N, d_T]."""
    h = teacher.node_embeddings(batch.x, batch.edge_index)
    return teacher.head(teacher.pool(h, batch.batch, batch.num_graphs)), h


def check_stored_logits(stored: Tensor, z_t: Tensor, stage: str) -> None:
    """Raise StageError when the logits stored in the shards [B, C] differ from the teacher's z_T [B, C] (the shards
    were made by another teacher); the tolerance is relative to the logit scale (float32 rounding)."""
    stored = stored.view_as(z_t)
    if not torch.allclose(stored, z_t, atol=1e-3 * max(1.0, float(z_t.abs().max())), rtol=1e-4):
        raise StageError(f"{stage}: the shards' stored teacher logits differ from this teacher's "
                         f"(max |Δ| {float((stored - z_t).abs().max()):.3g}): rerun generate with this "
                         f"teacher (gfkd run --force generate)")


def check_graph_logits(teacher: GraphClassifier, graphs: list[Data], device: torch.device, stage: str,
                       n: int = 32) -> None:
    """`check_stored_logits` on the first `n` of `graphs` (pseudo-graphs with `teacher_logits`)."""
    probe = next(iter(DataLoader(graphs[:n], batch_size=n))).to(device)
    check_stored_logits(probe.teacher_logits, teacher_outputs(teacher, probe)[0], stage)


def feature_loss(h_s: Tensor, h_t: Tensor, batch: Tensor, num_graphs: int, level: str) -> Tensor:
    """Projected student vs teacher embeddings, per d_T. node: Σ_i ‖P(H_S)_i − H_T,i‖²/(d_T·Σn);
    graph: mean over graphs of ‖(Σ_i P(H_S)_i − Σ_i H_T,i)/n_g‖²/d_T. h_s, h_t: [N, d_T], batch: [N]."""
    d = h_t.size(-1)
    if level == "node":
        return ((h_s - h_t) ** 2).sum() / (d * h_s.size(0))
    from torch_geometric.utils import scatter

    diff = scatter(h_s - h_t, batch, dim=0, dim_size=num_graphs, reduce="mean")
    return (diff ** 2).sum(-1).mean() / d


def num_edges(g: Data) -> int:
    """|E_g|: undirected edges of a symmetric graph (each stored in both directions), else its directed edges (GFKD's
    banks, `generate.randg.directed`)."""
    m = g.edge_index.size(1)
    return m // 2 if is_undirected(g.edge_index, num_nodes=g.num_nodes) else m


def graph_difficulty(graphs: list[Data], measure: str) -> Tensor:
    """d_g of each graph [M] under a fixed measure (acgkd.md §10); zeros for student_kl, recomputed per epoch."""
    if measure == "teacher_entropy":
        return torch.cat([g.difficulty for g in graphs]).float()
    if measure == "teacher_margin":
        return curriculum.teacher_margin(torch.cat([g.teacher_logits for g in graphs]))
    if measure == "size":
        return curriculum.size_rank(torch.tensor([g.num_nodes for g in graphs]),
                                    torch.tensor([num_edges(g) for g in graphs]))
    return torch.zeros(len(graphs))  # student_kl: recomputed every epoch


@torch.no_grad()
def _student_kl(student: nn.Module, teacher: GraphClassifier, graphs: list[Data], tau: float,
                device: torch.device) -> Tensor:
    student.eval()
    out = []
    for b in DataLoader(graphs, batch_size=256):
        b = b.to(device)
        z_t, _ = teacher_outputs(teacher, b)
        out.append(curriculum.student_kl(z_t, student(b.x, b.edge_index, b.batch, b.num_graphs), tau).cpu())
    return torch.cat(out)


def distill_student(student: nn.Module, teacher: GraphClassifier, graphs: list[Data], dc: DistillConfig, *,
                    epochs: int, seed: int, device: torch.device, class_weights: Tensor | None = None,
                    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                    stage: str = "distill", curriculum_on: bool = True,
                    degree_features: bool = False, rounds: "AdversarialRounds | None" = None) -> DistillResult:
    """Distil `teacher` into `student` on `graphs` with the settings of `dc` (already `effective()`).

    Args:
        graphs: training graphs; pseudo-graphs carry `teacher_logits` (the first batch's are checked against the
            teacher before training), `difficulty` and `graph_id`.
        class_weights: [C] weights by the teacher's predicted class (balanced KD), or None.
        evaluate: called after each epoch with the student in eval mode; returns `stage/split/metric` values,
            `{stage}/val/loss` among them when there is a validation set.
        curriculum_on: False for real graphs (no difficulty, every graph every epoch).
        degree_features: the node features are degree one-hots (featureless sets): `dc.augment` recomputes them.
        rounds: adversarial rounds (gfkd.generators.rounds): before every epoch they move the generators against
            the current student and their re-finalised graphs replace `graphs` for that epoch.
    Raises:
        StageError: a non-finite loss (names stage, epoch and the likely cause) or stored teacher logits that do not
            match the teacher (the shards were made by another teacher).
    """
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = student.to(device)
    tc = dc.temperature
    temp = Temperature(tc.mode, tc.value, tc.tau_min, tc.tau_range, tc.tau_init, teacher.num_classes).to(device)
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=dc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: max(0.0, 1 - e / epochs))
    t_opt = torch.optim.Adam(temp.parameters(), lr=0.0) if temp.learnable else None
    cc = dc.curriculum
    use_curriculum = curriculum_on and cc.pace != "off"
    difficulty = graph_difficulty(graphs, cc.measure) if use_curriculum else None
    ids = torch.tensor([int(g.graph_id) if "graph_id" in g else i for i, g in enumerate(graphs)])
    until = curriculum.full_epoch(cc.until, epochs)
    use_feat = dc.feat_weight > 0
    ac = dc.augment
    augment = ac.on

    if hasattr(graphs[0], "teacher_logits"):  # on the stored graphs, before any perturbation or round
        check_graph_logits(teacher, graphs, device, stage, dc.batch_size)
    result = DistillResult(last_state={}, best_state={}, best_epoch=-1)
    best: tuple[float, float] | None = None
    bar = tqdm(range(epochs), desc=stage, unit="epoch", disable=not sys.stderr.isatty(), leave=False)
    for epoch in bar:
        adv_terms: dict[str, float] = {}
        if rounds is not None:
            graphs, adv_terms = rounds.step(student)
            ids = torch.arange(len(graphs))
            difficulty = graph_difficulty(graphs, cc.measure) if use_curriculum else None
        if use_curriculum:
            if cc.measure == "student_kl":
                tau_now = temp.current() if not math.isnan(temp.current()) else tc.value
                difficulty = _student_kl(student, teacher, graphs, tau_now, device)
            frac = curriculum.pace(epoch, cc.pace, cc.q0, until)
            idx = curriculum.easiest(difficulty, ids, frac)
        else:
            frac, idx = 1.0, torch.arange(len(graphs))
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        lam = ramp(epoch, tc.lambda_max, tc.ramp_epochs)
        if t_opt is not None:
            t_opt.param_groups[0]["lr"] = tc.lr * lam
        student.train()
        sums = {"loss": 0.0, "kd": 0.0, "feat": 0.0, "tau": 0.0}
        n = 0
        for batch in DataLoader([graphs[i] for i in idx], batch_size=dc.batch_size):
            batch = batch.to(device)
            if augment:  # the teacher labels the perturbed graphs below
                batch.x, batch.edge_index = perturb(batch.x, batch.edge_index, batch.batch, batch.num_graphs,
                                                    edge_flip=ac.edge_flip, node_noise=ac.node_noise, generator=gen,
                                                    degree_features=degree_features, edge_add=ac.edge_add,
                                                    hub=ac.hub)
            z_t, h_t = teacher_outputs(teacher, batch)
            z_s, h_s = student.features(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
            tau = temp(z_t, z_s)
            w = class_weights.to(device)[z_t.argmax(-1)] if class_weights is not None else None
            kd = kd_kl(z_s, z_t, tau, w)
            loss = kd
            feat = torch.zeros((), device=device)
            if use_feat and h_s is not None:
                feat = feature_loss(h_s, h_t, batch.batch, batch.num_graphs, dc.feat_level)
                loss = loss + dc.feat_weight * feat
            if dc.beta_ce > 0:
                loss = loss + dc.beta_ce * F.cross_entropy(z_s, batch.y.view(-1))
            if not torch.isfinite(loss):
                cause = ("the input graphs hold NaN/inf features: regenerate them (gfkd run --force generate)"
                         if not torch.isfinite(batch.x).all() else f"lower distill.lr (now {dc.lr})")
                raise StageError(f"{stage}: non-finite loss at epoch {epoch}, step {n // dc.batch_size}: {cause}")
            opt.zero_grad()
            if t_opt is not None:
                t_opt.zero_grad()
            loss.backward()
            opt.step()
            if t_opt is not None:
                t_opt.step()
            b = batch.num_graphs
            sums["loss"] += loss.item() * b
            sums["kd"] += kd.item() * b
            sums["feat"] += feat.item() * b
            sums["tau"] += float(tau.detach().float().mean()) * b
            n += b
        sched.step()
        metrics = {f"{stage}/train/{k}": v / max(n, 1) for k, v in sums.items()}
        metrics |= {f"{stage}/train/fraction": frac, f"{stage}/train/lambda": lam,
                    f"{stage}/train/lr": opt.param_groups[0]["lr"]}
        metrics |= {f"{stage}/adversarial/{k}": v for k, v in adv_terms.items()}
        if evaluate is not None:
            student.eval()
            with torch.no_grad():
                metrics |= evaluate(student)
        vkey = f"{stage}/val/loss"
        if vkey in metrics and math.isfinite(metrics[vkey]):
            cand = (metrics[vkey], -metrics.get(f"{stage}/val/acc", 0.0))
            if best is None or cand < best:
                best, result.best_epoch = cand, epoch
                result.best_state = copy.deepcopy(student.state_dict())
        result.history.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        bar.set_postfix(loss=f"{metrics[f'{stage}/train/loss']:.3f}", tau=f"{metrics[f'{stage}/train/tau']:.2f}")
    result.last_state = copy.deepcopy(student.state_dict())
    if result.best_epoch < 0:
        result.best_state, result.best_epoch = result.last_state, epochs - 1
    return result
