"""OAD carried to graph classification on pseudo-graphs (oad.md §6): K students learn together on the generate
stage's shards, anchored to the teacher's stored logits, and are measured on the real held-out graphs.

Per batch of B pseudo-graphs (z_k: [B, C] graph logits, h_k: [ΣN, d] last-layer node embeddings):
    L = Σ_k (CE(z_k, ŷ) + λ_T·τ²·KL(p_T^τ ‖ p_k^τ)) + λ_G·L_G + λ_adv·L_adv
L_G: the peers' mean as each student's virtual teacher (T = 3, batchmean over graphs); L_adv: ring-paired
discriminators D_k (2 GCN layers over the batched disjoint graphs, one score per node; `graph`: an MLP on
mean-pooled embeddings), each stepped once on (sg h_k real, sg h_{k−1} fake) before its generator loss. Warm-up
epochs use the supervised and anchor terms only. Data-free: the students train on pseudo-graphs; real graphs are
only evaluated (no_grad). Primary numbers are the last epoch's; the picked student has the highest agreement with ŷ
on a held-out `pick_holdout` share of the pseudo-graphs, never trained on. With `curriculum` (group.graph.curriculum
= inherit) epoch e trains on the easiest ⌈q_e·M⌉ of the training pseudo-graphs, as the distill stage does, with
E_c = until·(W + E). With `temperature` (group.graph.anchor_temperature = inherit) each student's anchor τ is its own
distill-stage temperature: learnable and adversarial (gradient reversal, its lr ramped in over the first epochs);
with group.graph.anchor_temperature = calibrated one τ for all, read off the teacher's logits before training.
Each epoch also records the students' embedding lengths: emb_norm, the mean over students of a student's mean ‖h_v‖
in a batch, and emb_norm_ratio, the longest student's over the shortest's (both averaged over batches by graphs).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter
from tqdm import tqdm

from gfkd import curriculum as pacing
from gfkd.config import ANCHOR_TAU_MAX, CurriculumConfig, GraphGroupConfig, TemperatureConfig
from gfkd.distillation import feature_loss, graph_difficulty, teacher_outputs
from gfkd.errors import StageError
from gfkd.group.report import ensemble_probs
from gfkd.group.ring import discriminator_input, ring_step
from gfkd.io.checkpoint import load_training_state, save_training_state
from gfkd.losses import group as losses
from gfkd.losses.kd import Temperature, calibrated_tau, kd_kl, ramp
from gfkd.models.classifier import GraphClassifier
from gfkd.models.discriminator import GCNDiscriminator
from gfkd.models.widened import PlainStudent, WidenedStudent
from gfkd.train import COLLAPSED_SHARE, top_class_share

METHODS = ("oad", "independent", "dml", "kdcl", "oad_global", "oad_local")


def normalized_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """D̂^{-1/2}(A + I)D̂^{-1/2} of a batch of disjoint graphs as a sparse [N, N] tensor (edge_index: [2, E])."""
    loops = torch.arange(num_nodes, device=edge_index.device)
    ei = torch.cat([edge_index, torch.stack([loops, loops])], 1)
    deg = torch.bincount(ei[1], minlength=num_nodes).float()
    w = deg[ei[0]].rsqrt() * deg[ei[1]].rsqrt()
    return torch.sparse_coo_tensor(ei.flip(0), w, (num_nodes, num_nodes), check_invariants=False).coalesce()


class GraphDiscriminator(nn.Module):
    """`local_level = graph`: MLP(d → d_D → 1) on mean-pooled node embeddings; one score per graph."""

    def __init__(self, in_dim: int, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        return self.mlp(scatter(h, batch, dim=0, dim_size=num_graphs, reduce="mean")).squeeze(-1)


def student_outputs(students: nn.ModuleList, batch) -> tuple[Tensor, list[Tensor]]:
    """z: [K, B, C] and the K node-embedding tensors h_k: [ΣN, d] of a batch (plain: the last GNN layer's output;
    widened: the projected embeddings P(H_S), d = d_T)."""
    zs, hs = [], []
    for s in students:
        if isinstance(s, WidenedStudent):
            z, h = s.features(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
        else:
            net = s.net
            h = net.node_embeddings(batch.x, batch.edge_index)
            z = net.head(net.pool(h, batch.batch, batch.num_graphs))
        zs.append(z)
        hs.append(h)
    return torch.stack(zs), hs


def embedding_dim(student: nn.Module) -> int:
    """d of h_k: the plain student's hidden width, or the teacher's width after a widened student's projector."""
    return student.head.in_features if isinstance(student, WidenedStudent) else student.net.hidden


@dataclass
class GroupResult:
    """Per student and epoch: test accuracy, validation loss; the ensemble; the last and val-selected numbers."""

    numbers: dict[str, float]
    last_states: list[dict[str, Tensor]]
    history: list[dict[str, float]] = field(default_factory=list)
    per_student: list[list[dict[str, float]]] = field(default_factory=list)
    selected_states: list[dict[str, Tensor]] | None = None  # the val-selected epoch's (None without validation)
    selected_numbers: dict[str, float] | None = None  # _numbers at that epoch
    anchor_tau: float | None = None  # the τ every student's anchor used (None: learnt per student, or no anchor)


@torch.no_grad()
def _eval(students: nn.ModuleList, loader: DataLoader, device: torch.device) -> tuple[Tensor, Tensor]:
    """Logits of every student [K, n, C] and labels [n] over `loader`, eval mode."""
    students.eval()
    zs, ys = [], []
    for b in loader:
        b = b.to(device)
        zs.append(student_outputs(students, b)[0].cpu())
        ys.append(b.y.view(-1).cpu())
    return torch.cat(zs, 1), torch.cat(ys)


def train_graph_group(students: list[PlainStudent | WidenedStudent], graphs: list[Data], gc: GraphGroupConfig, *,
                      seed: int, device: torch.device, val_loader: DataLoader | None, test_loader: DataLoader,
                      teacher: GraphClassifier | None = None,
                      on_epoch: Callable[[int, dict[str, float], list[dict[str, float]]], None] | None = None,
                      stage: str = "group", checkpoint: Path | None = None,
                      checkpoint_every: int = 5, curriculum: CurriculumConfig | None = None,
                      temperature: TemperatureConfig | None = None) -> GroupResult:
    """Train K students together on pseudo-graphs; `graphs` carry teacher_logits, y (target) and graph_id.

    Widened students (reusing the teacher's frozen classifier) also match the teacher's node embeddings with weight
    `gc.feat_weight`, which needs `teacher` (run frozen on each batch of pseudo-graphs).

    Returns the numbers of oad.md §8 for pseudo-graph groups: last epoch (mean over students, picked student,
    ensemble) and, secondary, at the distillation epoch of lowest mean validation loss (real validation labels).
    With `checkpoint`, the training state (students, discriminators, optimisers, scheduler, RNG, selection,
    history) is saved there every `checkpoint_every` epochs and resumed from when it exists: bitwise the same
    result as an uninterrupted run (the batch order is drawn from (seed, epoch)). On a resume `on_epoch` is first
    called for every restored epoch. `curriculum` (the distill stage's, group.graph.curriculum = inherit): each
    epoch's batches come from the easiest ⌈q_e·M⌉ training pseudo-graphs under its fixed measure (ties by
    graph_id); None trains on all of them every epoch. `temperature` (the distill stage's, group.graph.
    anchor_temperature = inherit): student k's anchor τ_k = Temperature_k(z_T, z_k), stepped on its own Adam at lr
    η_t·λ_e as in the distill stage; None: τ = gc.anchor_tau, or under gc.anchor_temperature = calibrated the
    smallest τ in [gc.anchor_tau, 10] at which the teacher's mean top-class probability over the training
    pseudo-graphs (the pick hold-out left out) is at most gc.anchor_confidence, fixed before the first epoch.
    """
    if gc.method not in METHODS:
        raise ValueError(f"group.graph.method must be one of {METHODS}")
    K = len(students)
    students = nn.ModuleList(students).to(device)
    d = embedding_dim(students[0])
    use_feat = isinstance(students[0], WidenedStudent) and gc.feat_weight > 0
    if use_feat and teacher is None:
        raise ValueError("widened group students with feat_weight > 0 need the teacher's node embeddings")
    if use_feat:
        teacher = teacher.to(device).eval()
    node_level = gc.local_level == "node"
    d_in = discriminator_input(gc.d_input)
    discs = nn.ModuleList(GCNDiscriminator(d, gc.d_hidden) if node_level else GraphDiscriminator(d, gc.d_hidden)
                          for _ in range(K)).to(device)
    uses_global = gc.method in ("oad", "oad_global") and gc.lambda_global > 0
    uses_adv = gc.method in ("oad", "oad_local") and gc.lambda_adv > 0

    # the pick hold-out: a seeded share of the pseudo-graphs, never trained on
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(graphs), generator=gen)
    if not graphs:
        raise ValueError("the group stage got no pseudo-graphs: check the generate stage's shards")
    n_hold = min(math.ceil(gc.pick_holdout * len(graphs)), len(graphs) - 1) if gc.pick_holdout > 0 else 0
    hold = [graphs[i] for i in perm[:n_hold]]
    train = [graphs[i] for i in perm[n_hold:]]
    total = gc.warmup_epochs + gc.epochs

    pool = torch.arange(len(train))  # every training graph, every epoch, unless a curriculum narrows it
    if curriculum is not None:
        difficulty = graph_difficulty(train, curriculum.measure)
        ids = torch.tensor([int(g.graph_id) for g in train])
        until = pacing.full_epoch(curriculum.until, total)

    def target(b) -> Tensor:
        return b.teacher_logits.view(b.num_graphs, -1).argmax(-1) if gc.label_source == "teacher_argmax" \
            else b.y.view(-1)

    opt = torch.optim.Adam(students.parameters(), lr=gc.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: max(0.0, 1 - e / total))
    d_opts = [torch.optim.Adam(dk.parameters(), lr=gc.lr, weight_decay=0.0) for dk in discs]
    anchor_tau = gc.anchor_tau  # group.graph.anchor_temperature = calibrated: read off the training graphs' logits
    if gc.anchor_temperature == "calibrated":
        anchor_tau = calibrated_tau(torch.cat([g.teacher_logits.view(1, -1) for g in train]), gc.anchor_confidence,
                                    gc.anchor_tau, ANCHOR_TAU_MAX)
    tc = temperature
    temps = nn.ModuleList(Temperature(tc.mode, tc.value, tc.tau_min, tc.tau_range, tc.tau_init,
                                      graphs[0].teacher_logits.numel()) for _ in range(K)).to(device) \
        if tc is not None and gc.teacher_anchor > 0 else None
    t_opt = torch.optim.Adam(temps.parameters(), lr=0.0) if temps is not None and temps[0].learnable else None
    history: list[dict[str, float]] = []
    per_student: list[list[dict[str, float]]] = [[] for _ in range(K)]
    best_val, best_states, best_epoch = math.inf, None, -1
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_training_state(Path(checkpoint))
        students.load_state_dict(state["students"])
        discs.load_state_dict(state["discriminators"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for d_opt, d_state in zip(d_opts, state["d_optimizers"]):
            d_opt.load_state_dict(d_state)
        if temps is not None:
            temps.load_state_dict(state["temperatures"])
        if t_opt is not None:
            t_opt.load_state_dict(state["t_optimizer"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():  # dropout draws from it on CUDA
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history, per_student = state["history"], state["per_student"]
        best_val, best_states, best_epoch = state["best_val"], state["best_states"], state["best_epoch"]
        start = state["epoch"] + 1
        for e, record in enumerate(history):
            if on_epoch is not None:
                on_epoch(e, record, [per_student[k][e] for k in range(K)])
    bar = tqdm(range(start, total), desc=stage, unit="epoch", disable=not sys.stderr.isatty(), leave=False)
    for epoch in bar:
        distill = epoch >= gc.warmup_epochs and gc.method != "independent"
        students.train()
        sums: dict[str, float] = {}
        n = 0
        frac = 1.0
        if curriculum is not None:
            frac = pacing.pace(epoch, curriculum.pace, curriculum.q0, until)
            pool = pacing.easiest(difficulty, ids, frac)
        if t_opt is not None:
            t_opt.param_groups[0]["lr"] = tc.lr * ramp(epoch, tc.lambda_max, tc.ramp_epochs)
        for d_opt in d_opts:  # oad.md §3: D_k's lr is the students' lr, which decays linearly over W + E
            d_opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
        order = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))]
        for b in DataLoader([train[i] for i in order], batch_size=gc.batch_size):
            b = b.to(device)
            z, h = student_outputs(students, b)  # [K, B, C], K × [ΣN, d]
            norms = torch.stack([hk.detach().norm(dim=-1).mean() for hk in h])  # [K]: each student's mean ‖h_v‖
            watch = {"emb_norm": norms.mean(), "emb_norm_ratio": norms.max() / norms.min().clamp_min(1e-12)}
            y_hat = target(b)
            z_t = b.teacher_logits.view(b.num_graphs, -1)
            terms = {"sup": sum(F.cross_entropy(z[k], y_hat) for k in range(K))}
            if gc.teacher_anchor > 0:
                taus = [temps[k](z_t, z[k]) for k in range(K)] if temps is not None else [anchor_tau] * K
                terms["anchor"] = sum(kd_kl(z[k], z_t, taus[k]) for k in range(K))
                if temps is not None:
                    terms["tau"] = torch.stack([t.detach().float().mean() for t in taus]).mean()
            loss = gc.sup_weight * terms["sup"] + gc.teacher_anchor * terms.get("anchor", 0.0)
            if use_feat:
                h_t = teacher_outputs(teacher, b)[1]  # [ΣN, d_T], no grad
                terms["feat"] = sum(feature_loss(h[k], h_t, b.batch, b.num_graphs, "node") for k in range(K))
                loss = loss + gc.feat_weight * terms["feat"]
            if distill and uses_global:
                terms["global"] = losses.global_kl(z, gc.temperature).sum()
                loss = loss + gc.lambda_global * terms["global"]
            if distill and gc.method == "dml":
                terms["dml"] = losses.dml(z, 1.0).sum()
                loss = loss + terms["dml"]
            if distill and gc.method == "kdcl":
                terms["kdcl"] = losses.kdcl(z, y_hat, gc.temperature).sum()
                loss = loss + terms["kdcl"]
            if distill and uses_adv:
                adj = normalized_adjacency(b.edge_index, b.num_nodes) if node_level else None
                score = ((lambda k, x: discs[k](d_in(x), adj)) if node_level
                         else (lambda k, x: discs[k](d_in(x), b.batch, b.num_graphs)))
                adv, _ = ring_step(d_opts, h, score, gc.d_loss_scale)  # D_k steps, then L_adv,k reaches student k − 1
                terms["adv"] = sum(adv, z.new_zeros(()))
                loss = loss + gc.lambda_adv * terms["adv"]
            if not torch.isfinite(loss):
                bad = next((k for k, v in terms.items() if not torch.isfinite(torch.as_tensor(v))), "loss")
                raise StageError(f"{stage}: non-finite loss term '{bad}' at epoch {epoch}, step {n // gc.batch_size}: "
                                 f"lower group.graph.lr (now {gc.lr}) or check the shards for NaN features")
            opt.zero_grad(set_to_none=True)
            if t_opt is not None:
                t_opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if t_opt is not None:
                t_opt.step()
            for key, v in {**terms, **watch, "loss": loss}.items():
                sums[key] = sums.get(key, 0.0) + float(torch.as_tensor(v).detach()) * b.num_graphs
            n += b.num_graphs
        sched.step()
        record = {f"{stage}/train/{k}": v / max(n, 1) for k, v in sums.items()}
        if curriculum is not None:
            record[f"{stage}/train/fraction"] = frac
        zt, yt = _eval(students, test_loader, device)
        acc_t = (zt.argmax(-1) == yt).float().mean(1)  # [K]
        record[f"{stage}/test/acc_mean"] = float(acc_t.mean())
        record[f"{stage}/test/acc_ensemble"] = float((ensemble_probs(zt).argmax(-1) == yt).float().mean())
        student_rec = [{f"{stage}/test/acc": float(acc_t[k])} for k in range(K)]
        if val_loader is not None:
            zv, yv = _eval(students, val_loader, device)
            vloss = torch.stack([F.cross_entropy(zv[k], yv) for k in range(K)])
            record[f"{stage}/val/loss_mean"] = float(vloss.mean())
            record[f"{stage}/val/acc_mean"] = float((zv.argmax(-1) == yv).float().mean())
            for k in range(K):
                student_rec[k] |= {f"{stage}/val/loss": float(vloss[k]),
                                   f"{stage}/val/acc": float((zv[k].argmax(-1) == yv).float().mean())}
            if epoch >= gc.warmup_epochs and float(vloss.mean()) < best_val:
                best_val, best_epoch = float(vloss.mean()), epoch
                best_states = [copy.deepcopy(s.state_dict()) for s in students]
        history.append(record)
        for k in range(K):
            per_student[k].append(student_rec[k])
        if on_epoch is not None:
            on_epoch(epoch, record, student_rec)
        bar.set_postfix(loss=f"{record[f'{stage}/train/loss']:.3f}", acc=f"{record[f'{stage}/test/acc_mean']:.3f}")
        if checkpoint is not None and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < total:
            save_training_state(Path(checkpoint), {
                "epoch": epoch, "students": students.state_dict(), "discriminators": discs.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "d_optimizers": [d.state_dict() for d in d_opts], "rng": torch.get_rng_state(),
                "temperatures": temps.state_dict() if temps is not None else None,
                "t_optimizer": t_opt.state_dict() if t_opt is not None else None,
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                "history": history, "per_student": per_student, "best_val": best_val,
                "best_states": best_states, "best_epoch": best_epoch})

    numbers = _numbers(students, hold, target, test_loader, device, gc.batch_size)
    last_states = [copy.deepcopy(s.state_dict()) for s in students]
    sel = None
    if best_states is not None:
        for s, st in zip(students, best_states):
            s.load_state_dict(st)
        sel = _numbers(students, hold, target, test_loader, device, gc.batch_size)
        numbers |= {f"{k}_val_selected": v for k, v in sel.items() if k.startswith("acc")}
        numbers["val_selected_epoch"] = float(best_epoch)
        for s, st in zip(students, last_states):
            s.load_state_dict(st)
    return GroupResult(numbers, last_states, history, per_student, best_states, sel,
                       anchor_tau if temps is None and gc.teacher_anchor > 0 else None)


def _numbers(students: nn.ModuleList, hold: list[Data], target: Callable, test_loader: DataLoader,
             device: torch.device, batch_size: int) -> dict[str, float]:
    """Mean over students, picked student (agreement with ŷ on the hold-out), ensemble; which of them collapsed (one
    class for ≥ 95 % of the test graphs): `collapsed` counts the students, `collapsed_picked`, `collapsed_ensemble`
    are 0 or 1."""
    zt, yt = _eval(students, test_loader, device)
    pred = zt.argmax(-1)  # [K, n]
    acc = (pred == yt).float().mean(1)
    top = [top_class_share(p) for p in pred]
    ens = ensemble_probs(zt).argmax(-1)  # [n]
    out = {"acc_mean": float(acc.mean()), "acc_ensemble": float((ens == yt).float().mean()),
           "collapsed": float(sum(t >= COLLAPSED_SHARE for t in top)),
           "collapsed_ensemble": float(top_class_share(ens) >= COLLAPSED_SHARE)}
    if hold:
        loader = DataLoader(hold, batch_size=256)
        zh, _ = _eval(students, loader, device)
        yh = torch.cat([target(b) for b in loader])
        agree = (zh.argmax(-1) == yh).float().mean(1)
        pick = int(torch.argmax(agree))  # ties: lowest k
        out |= {"acc_picked": float(acc[pick]), "picked_student": float(pick),
                "pick_beat_mean": float(acc[pick] > acc.mean()), "collapsed_picked": float(top[pick] >= COLLAPSED_SHARE)}
    out |= {f"acc_student{k}": float(a) for k, a in enumerate(acc)}
    return out
