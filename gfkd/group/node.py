"""Node-level online group distillation: OAD and its baselines on one citation graph (oad.md §2-§5, §7-§8).

K students train full-batch, one Adam step per epoch. Warm-up (W epochs): L = Σ_k CE_k on the labelled nodes, the
discriminators untouched and no group term computed. Distillation (E epochs), by method:

    oad         L = Σ_k CE_k + λ_G·Σ_k L_G,k + λ_adv·Σ_k L_adv,k
    oad_global  λ_adv = 0            oad_local  λ_G = 0
    oad_agnostic  as oad, D_k an MLP per node (no message passing: the graph-agnostic discriminator of oad.md §7)
    oad_l2      as oad, L_adv,k replaced by the non-adversarial (1/N) Σ_i ‖h_{k−1,i} − sg(h_k,i)‖² (no discriminator)
    dml         L = Σ_k (CE_k + L_DML,k)          kdcl  L = Σ_k (CE_k + L_KDCL,k)
    independent L = Σ_k CE_k

Each OAD iteration, for k = 0..K−1 in order: one Adam step of D_k on L_D,k = c_D·[BCE(D_k(sg h_k), 1) +
BCE(D_k(sg h_{k−1}), 0)], then L_adv,k = BCE(D_k(h_{k−1}), 1) under the updated D_k (gradient to student k−1
only; the students' optimiser holds no D parameter). After the step every student is evaluated (eval mode) on the
validation and test masks in every distillation epoch; ê and the three numbers come from `gfkd.group.report`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gfkd.errors import StageError
from gfkd.group import ring
from gfkd.group.report import ensemble_probs, group_numbers
from gfkd.losses import group as losses
from gfkd.models.discriminator import GCNDiscriminator
from gfkd.models.node_students import NodeGraph, NodeStudent

METHODS = ("oad", "independent", "dml", "kdcl", "oad_global", "oad_local", "oad_agnostic", "oad_l2")


@dataclass(frozen=True)
class GroupSettings:
    """Plain typed settings of one node-level group run (built from `GroupConfig` by `settings_from_config`)."""

    method: str = "oad"
    backbone: str = "gcn"
    students: int = 4
    warmup_epochs: int = 100
    epochs: int = 100
    lr: float = 5e-3
    weight_decay: float = 5e-4
    hidden: int = 16
    heads: int = 8
    dropout: float | None = None
    temperature: float = 3.0
    dml_temperature: float = 1.0
    lambda_global: float = 1.0
    lambda_adv: float = 1.0
    global_on: str = "train"
    d_hidden: int = 16
    d_loss_scale: float = 1.0
    d_input: str = "raw"
    kl_scale: str = "batchmean"
    d_out_relu: bool = False
    gcn_student: str = "clean"
    gat_self_loops: bool = True
    sage_h: str = "before_dropout"
    dml_stop_grad: bool = True

    @property
    def uses_global(self) -> bool:
        return self.method in ("oad", "oad_global", "oad_agnostic", "oad_l2") and self.lambda_global > 0

    @property
    def uses_adv(self) -> bool:
        return self.method in ("oad", "oad_local", "oad_agnostic") and self.lambda_adv > 0


_SWITCHES = ("kl_scale", "d_out_relu", "gcn_student", "gat_self_loops", "sage_h", "dml_stop_grad")


def settings_from_config(group) -> GroupSettings:
    """`GroupConfig` → GroupSettings with the parity switches resolved."""
    plain = {k: getattr(group, k) for k in GroupSettings.__dataclass_fields__ if k not in _SWITCHES}
    return GroupSettings(**plain, **{k: group.resolved(k) for k in _SWITCHES})


@dataclass
class GroupModels:
    students: nn.ModuleList
    discriminators: nn.ModuleList


def build_models(s: GroupSettings, num_features: int, num_classes: int, seed: int) -> GroupModels:
    """K students (student k from torch seed `seed + k`) and K discriminators (D_k from `seed + k + 100_003`)."""
    students, discs = [], []
    for k in range(s.students):
        torch.manual_seed(seed + k)
        students.append(NodeStudent(s.backbone, num_features, num_classes, s.hidden, s.heads, s.dropout,
                                    gcn_reference=s.gcn_student == "reference", gat_self_loops=s.gat_self_loops,
                                    sage_h=s.sage_h))
    for k in range(s.students):
        torch.manual_seed(seed + k + 100_003)
        one_layer = s.backbone == "gcn" and s.gcn_student == "reference"
        discs.append(GCNDiscriminator(students[k].embed_dim, s.d_hidden, layers=1 if one_layer else 2,
                                      out_relu=s.d_out_relu or one_layer))
    return GroupModels(nn.ModuleList(students), nn.ModuleList(discs))


def _check(value: Tensor, epoch: int, term: str) -> None:
    if not torch.isfinite(value).all():
        raise StageError(f"group: non-finite {term} at epoch {epoch}: lower group.lr or check the input features")


def forward_all(models: GroupModels, g: NodeGraph) -> tuple[Tensor, list[Tensor]]:
    """→ z: [K, N, C] and the K local embeddings h_k: [N, d]."""
    outs = [m(g) for m in models.students]
    return torch.stack([z for z, _ in outs]), [h for _, h in outs]


def ring_step(models: GroupModels, d_opts: list[torch.optim.Optimizer], h: list[Tensor], g: NodeGraph,
              d_loss_scale: float, graph_aware: bool = True, d_input: str = "raw") -> tuple[Tensor, Tensor]:
    """The ring's step (gfkd.group.ring.ring_step) with each D_k on its student's GCN operator; `graph_aware` False:
    each D_k scores every node alone (its GCN layers without the adjacency: an MLP per node); `d_input` "unit": D_k
    scores each node's h/‖h‖.

    Returns (Σ_k L_adv,k with graph to the students, Σ_k L_D,k detached)."""
    adjs = [models.students[k].adjacency(g) if graph_aware else None for k in range(len(h))]
    norm = ring.discriminator_input(d_input)
    adv, d_total = ring.ring_step(d_opts, h, lambda k, x: models.discriminators[k](norm(x), adjs[k]), d_loss_scale)
    return sum(adv, h[0].new_zeros(())), d_total


def ring_l2(h: list[Tensor]) -> Tensor:
    """The non-adversarial local term: Σ_k (1/N) Σ_i ‖h_{k−1,i} − sg(h_k,i)‖², each h: [N, d]; student k − 1
    gets gradient from pair k only, as in the ring."""
    K = len(h)
    return sum(((h[losses.ring_fake(k, K)] - h[k].detach()) ** 2).sum(-1).mean() for k in range(K))


def group_loss(s: GroupSettings, z: Tensor, g: NodeGraph, distill: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """z: [K, N, C] → Σ_k CE_k plus the method's logit term during distillation; per-term values for logging."""
    tr = g.train_mask
    y = g.y[tr]
    sup = F.cross_entropy(z[:, tr].reshape(-1, z.size(-1)), y.repeat(z.size(0)), reduction="none")
    sup = sup.view(z.size(0), -1).mean(1).sum()  # Σ_k mean CE over labelled nodes
    terms = {"sup": sup}
    if not distill:
        return sup, terms
    zv = z[:, tr] if s.global_on == "train" else z
    loss = sup
    if s.uses_global:
        terms["global"] = losses.global_kl(zv, s.temperature, s.kl_scale).sum()
        loss = loss + s.lambda_global * terms["global"]
    if s.method == "dml":
        terms["dml"] = losses.dml(zv, s.dml_temperature, s.dml_stop_grad).sum()
        loss = loss + terms["dml"]
    if s.method == "kdcl":
        terms["kdcl"] = losses.kdcl(z[:, tr], y, s.temperature).sum()
        loss = loss + terms["kdcl"]
    return loss, terms


@torch.no_grad()
def evaluate(models: GroupModels, g: NodeGraph) -> dict[str, np.ndarray | float]:
    """Eval-mode accuracies: val/test per student ([K]) and of the ensemble (mean of softmax)."""
    models.students.eval()
    z, _ = forward_all(models, g)
    pred, ens = z.argmax(-1), ensemble_probs(z).argmax(-1)  # [K, N], [N]
    out = {}
    for split, mask in (("val", g.val_mask), ("test", g.test_mask)):
        out[f"{split}_acc"] = (pred[:, mask] == g.y[mask]).float().mean(1).cpu().numpy()
        out[f"ensemble_{split}_acc"] = float((ens[mask] == g.y[mask]).float().mean())
    return out


def loss_terms(record: dict) -> dict[str, float]:
    """The loss terms of an epoch's record (floats; not the accuracies, which are logged under val/ and test/)."""
    return {k: v for k, v in record.items() if isinstance(v, float) and not k.endswith("_acc")}


@dataclass
class GroupRun:
    """History of one seed: per epoch and student accuracies, loss terms, wall time; the report at ê."""

    val_acc: np.ndarray  # [E, K], distillation epochs
    test_acc: np.ndarray  # [E, K]
    ensemble_val: np.ndarray  # [E]
    ensemble_test: np.ndarray  # [E]
    losses: list[dict[str, float]] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_group(g: NodeGraph, s: GroupSettings, seed: int,
                on_epoch: Callable[[int, dict], None] | None = None, models: GroupModels | None = None) -> GroupRun:
    """Train one group on graph g for W + E epochs; return its history and the three numbers (oad.md §8).

    Args:
        g: the graph (x: [N, F], masks: [N]); s: settings; seed: students k use seed + k, training uses seed.
        on_epoch: called with (epoch, record) after each epoch (logging, progress).
        models: students and discriminators to train in place (default: `build_models(s, ..., seed)`).
    """
    if s.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    models = models or build_models(s, g.num_features, g.num_classes, seed)
    models.students.to(g.y.device)  # built on the CPU, trained where the graph is (run.device)
    models.discriminators.to(g.y.device)
    seed_everything(seed)
    opt = torch.optim.Adam(models.students.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    d_opts = [torch.optim.Adam(d.parameters(), lr=s.lr, weight_decay=0.0) for d in models.discriminators]
    total = s.warmup_epochs + s.epochs
    hist = {k: [] for k in ("val_acc", "test_acc", "ensemble_val_acc", "ensemble_test_acc")}
    run = GroupRun(np.empty(0), np.empty(0), np.empty(0), np.empty(0))
    for epoch in range(total):
        t0 = time.perf_counter()
        distill = epoch >= s.warmup_epochs
        models.students.train()
        z, h = forward_all(models, g)
        loss, terms = group_loss(s, z, g, distill and s.method != "independent")
        if distill and s.uses_adv:
            terms["adv"], terms["disc"] = ring_step(models, d_opts, h, g, s.d_loss_scale,
                                                    graph_aware=s.method != "oad_agnostic", d_input=s.d_input)
            loss = loss + s.lambda_adv * terms["adv"]
        if distill and s.method == "oad_l2" and s.lambda_adv > 0:
            terms["l2"] = ring_l2(h)
            loss = loss + s.lambda_adv * terms["l2"]
        for name, value in terms.items():
            _check(value, epoch, name)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        record = {name: float(v.detach()) for name, v in terms.items()} | {"loss": float(loss.detach())}
        if distill:  # ê is chosen among distillation epochs only, so warm-up epochs are not evaluated
            ev = evaluate(models, g)
            for k in hist:
                hist[k].append(ev[k])
            record |= {"val_acc": ev["val_acc"], "test_acc": ev["test_acc"],
                       "ensemble_test_acc": ev["ensemble_test_acc"]}
        run.losses.append(loss_terms(record))
        run.epoch_s.append(time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(epoch, record)
    run.val_acc, run.test_acc = np.stack(hist["val_acc"]), np.stack(hist["test_acc"])
    run.ensemble_val, run.ensemble_test = np.array(hist["ensemble_val_acc"]), np.array(hist["ensemble_test_acc"])
    run.report = group_numbers(run.val_acc, run.test_acc, run.ensemble_test)
    run.report["epoch"] += s.warmup_epochs  # ê counted from the first warm-up epoch
    run.report["wall_s"] = float(sum(run.epoch_s))
    return run


def load_citation(name: str, root=None, cache=None, allow_download: bool = True,
                  device: torch.device | str = "cpu") -> NodeGraph:
    """Cora / CiteSeer / PubMed, public split, row-normalised features → NodeGraph on `device`."""
    from pathlib import Path

    from gfkd.data.datasets import load_planetoid

    data = load_planetoid(name, root, Path(cache) if cache else Path("runs/_cache/datasets"), allow_download)
    return NodeGraph.build(data.x, data.edge_index, data.y, data.train_mask, data.val_mask, data.test_mask).to(device)
