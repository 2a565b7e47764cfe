"""Distill stage: students from the teacher, on the generate stage's pseudo-graphs only, and the real-data rows.

Variants, each trained for `distill.seeds` student seeds by the same loop (`gfkd.distillation`):
- `pseudo`: the data-free student on the union of the pseudo-graph banks with `distill.recipe` (acgkd | plain).
  It reads the shards and the teacher; real graphs reach it only through the evaluation callback (validation and
  test, under no_grad), and its primary number is the last epoch; the val-selected number is secondary.
- `kd_real`: the plain KD recipe on the real training graphs (the upper bound), selected on validation loss.
- `student_real`: the student trained with CE on the real training graphs (the teacher's recipe), same selection.
The data-free students run first; the real training split is opened only afterwards, for the baselines.

Outputs in `<run>/distill/`: `students/<variant>-s<seed>.pt` (state_dict, weights_only) with its `.json` (spec)
and `.result.json` (results and history), `results.json`, `curves.png`, `manifest.json` last. A killed stage resumes: each finished
student is kept in the staging folder and skipped on the rerun.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric import seed_everything
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import is_undirected

from gfkd.config import DistillConfig, RunConfig
from gfkd.data.splits import make_split
from gfkd.distillation import distill_student
from gfkd.errors import ConfigError
from gfkd.generators.rounds import AdversarialRounds, load_states
from gfkd.io.atomic import write_json
from gfkd.io.checkpoint import save_checkpoint
from gfkd.io.manifest import Manifest
from gfkd.io.shards import read_shard_set, table_to_graphs
from gfkd.layout import RunLayout
from gfkd.losses.kd import class_balance_weights
from gfkd.models import GraphClassifier
from gfkd.models.classifier import SWITCHES
from gfkd.models.widened import build_student
from gfkd.plots import distill_curves
from gfkd.stages.common import StageOutcome, cached, prepare_runtime, publish, resumable_staging, save_figure
from gfkd.stages.teacher import check_teacher_dataset, check_teacher_split, load_dataset, load_teacher
from gfkd.tracking import NullLogger
from gfkd.train import COLLAPSED_SHARE, evaluate, fit_classifier, logits_of, seed_agreement, top_class_share

STAGE = "distill"


def load_pseudo_graphs(shard_dir: Path) -> list[Data]:
    """Every pseudo-graph of a checked shard set, in graph_id order."""
    graphs = [g for table in read_shard_set(shard_dir) for g in table_to_graphs(table)]
    return sorted(graphs, key=lambda g: int(g.graph_id))


def student_spec(dc: DistillConfig, teacher: GraphClassifier, real: bool) -> dict:
    """The JSON spec of a student (build_student's input). Real-data rows are plain students with their own head.
    A plain student takes the teacher's model-level parity switches (gfkd.md §8: the reference code's graphs carried
    the self-loops every model read); a widened one stays clean."""
    s = dc.student
    widen = teacher.hidden if dc.width_mult == "teacher" else s.hidden * int(dc.width_mult)
    widened = dc.head == "reuse" and not real
    switches = {} if widened else {k: v for k, v in teacher.config().items() if k in SWITCHES}
    return {"kind": "widened" if widened else "plain", "arch": teacher.config()["arch"] if s.arch == "auto" else s.arch,
            "in_dim": teacher.in_dim, "num_classes": teacher.num_classes, "layers": s.layers,
            "hidden": widen if widened else s.hidden, "dropout": s.dropout, "projector": dc.projector,
            "pooling": teacher.pooling, **switches}


def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true classes over `loader` with `model` in eval mode: ([n], [n])."""
    z, y = logits_of(model, loader, device)
    return z.argmax(-1).numpy(), y.numpy()


def _scores(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    pred, true = predict(model, loader, device)
    top = top_class_share(torch.from_numpy(pred))
    return {"acc": float((pred == true).mean()), "top_class_fraction": top, "collapsed": top >= COLLAPSED_SHARE,
            "pred": pred.tolist()}


def run(cfg: RunConfig, layout: RunLayout, cache_key: str, logger: NullLogger = NullLogger(), force: bool = False,
        teacher_dir: Path | None = None, generate_dir: Path | None = None) -> StageOutcome:
    """Distil (or find finished) the students of this run."""
    if (done := cached(layout, STAGE, cache_key, force)) is not None:
        return done
    t_stage = time.perf_counter()
    dc = cfg.distill.effective()
    device = prepare_runtime(cfg.run, flush_denormal=True)  # as generate leaves it: a fresh run's arithmetic
    teacher_pt = Path(teacher_dir or layout.stage_dir("teacher")) / "teacher.pt"
    teacher, meta, bn_eval = load_teacher(teacher_pt)
    check_teacher_dataset(meta, cfg, teacher_pt, STAGE)
    teacher = teacher.to(device)
    shard_dir = Path(generate_dir or layout.stage_dir("generate")) / "shards"
    pseudo = load_pseudo_graphs(shard_dir)
    ac = dc.augment
    if ac.edits_edges and any(not is_undirected(g.edge_index, num_nodes=g.num_nodes) for g in pseudo):
        raise ConfigError(f"distill.augment's edge_flip, edge_add and hub make undirected graphs, and the "
                          f"pseudo-graphs in {shard_dir} are directed (GFKD, or generate.randg.directed=true): set "
                          f"them to 0, or generate undirected graphs")
    banks = int(json.loads((shard_dir / "_manifest.json").read_text()).get("banks", 1))
    redraw_key = "distill.adversarial.rounds" if dc.adversarial.rounds else "distill.resample"
    states = load_states(shard_dir, redraw_key) if dc.redraws else None  # every data-free student starts from them

    # Real validation and test graphs: evaluation only (never the training split for the data-free students).
    ds = load_dataset(cfg)
    split = make_split(ds.labels, cfg.protocol.name, cfg.protocol.fold, cfg.protocol.seed, cfg.protocol.val)
    check_teacher_split(meta, split, cfg, teacher_pt, STAGE)
    val_loader = DataLoader(ds.subset(split.val), batch_size=256) if len(split.val) else None
    test_loader = DataLoader(ds.subset(split.test), batch_size=256)

    def evaluate_fn(model: nn.Module) -> dict[str, float]:
        out = {}
        if val_loader is not None:
            v = evaluate(model, val_loader, device)
            out |= {f"{STAGE}/val/loss": v.loss, f"{STAGE}/val/acc": v.acc}
        out[f"{STAGE}/test/acc"] = evaluate(model, test_loader, device).acc  # logged; never selects
        return out

    featureless = meta["data"]["feature_kind"] == "degree"
    balanced = dc.class_weight == "balanced" or (dc.class_weight == "auto" and featureless)
    pseudo_pred = torch.cat([g.teacher_logits for g in pseudo]).argmax(-1)
    class_weights = class_balance_weights(pseudo_pred, teacher.num_classes) if balanced else None
    if dc.class_weight == "prior":  # the training class shares: outside protocol.md §1's data-free list, a diagnostic
        if "class_counts" not in meta["data"]:
            raise ConfigError(f"distill.class_weight=prior: {teacher_pt} has no class_counts in its metadata; "
                              "retrain the teacher or use distill.class_weight=none")
        class_weights = class_balance_weights(pseudo_pred, teacher.num_classes,
                                              torch.tensor(meta["data"]["class_counts"]))
    logger.params({"distill": cfg.distill.model_dump(mode="json"), "effective": dc.model_dump(mode="json"),
                   "pseudo_graphs": len(pseudo), "banks": banks, "class_weights": class_weights.tolist()
                   if class_weights is not None else "none", "teacher_dir": str(teacher_dir),
                   "generate_dir": str(generate_dir)})

    staging = resumable_staging(layout, STAGE, cache_key, fresh=force)
    (staging / "students").mkdir(exist_ok=True)
    variants = [("pseudo", s) for s in range(dc.seeds)] + [(b, s) for b in dc.baselines for s in range(dc.seeds)]
    train_graphs: list[Data] | None = None
    records: dict[str, dict] = {}
    for variant, seed in variants:
        name = f"{variant}-s{seed}"
        rec_path = staging / "students" / f"{name}.result.json"
        if rec_path.is_file():  # finished before a kill
            records[name] = json.loads(rec_path.read_text())
            continue
        real = variant != "pseudo"
        if real and train_graphs is None:
            train_graphs = ds.subset(split.train)  # opened only now: every data-free student is done
        spec = student_spec(dc if not real else dc.model_copy(update={"head": "own"}), teacher, real)
        seed_everything(1000 * cfg.split_seed + seed)
        student = build_student(spec, teacher).to(device)
        child = logger.child(name, {"gfkd.stage": STAGE, "gfkd.variant": variant, "gfkd.student_seed": str(seed)})
        t0 = time.perf_counter()
        rounds = None
        if variant == "student_real":
            tc = cfg.teacher
            fit = fit_classifier(student, DataLoader(train_graphs, batch_size=tc.batch_size, shuffle=True,
                                                     generator=torch.Generator().manual_seed(seed)),
                                 val_loader, epochs=tc.epochs, lr=tc.lr, weight_decay=tc.resolved_weight_decay,
                                 lr_step=tc.lr_step, lr_gamma=tc.lr_gamma, label_smoothing=tc.resolved_label_smoothing,
                                 device=device, stage=STAGE, on_epoch=lambda e, m: child.metrics(m, step=e))
            last, best, best_epoch, history = fit.best_state, fit.best_state, fit.best_epoch, fit.history
        else:
            # KD on real graphs: the plain recipe (no CE to generation targets, no class weights)
            plain = cfg.distill.model_copy(update={"recipe": "plain"}).effective()
            ac = dc.adversarial
            rounds = None if real or states is None else AdversarialRounds(
                teacher, meta["data"], bn_eval, cfg.generate, states, steps=ac.steps if ac.rounds else 0,
                beta=ac.beta, div=ac.div, lr_scale=ac.lr_scale, seed=1000 * cfg.split_seed + seed, device=device,
                key=redraw_key)
            res = distill_student(student, teacher, pseudo if not real else train_graphs, dc if not real else plain,
                                  epochs=dc.resolved_epochs(not real, banks), seed=seed, device=device,
                                  class_weights=class_weights if not real else None, evaluate=evaluate_fn,
                                  on_epoch=lambda e, m: child.metrics(m, step=e), stage=STAGE,
                                  curriculum_on=not real, degree_features=featureless, rounds=rounds)
            last, best, best_epoch, history = res.last_state, res.best_state, res.best_epoch, res.history
        wall = time.perf_counter() - t0
        # Primary: last epoch for data-free students, the val-selected epoch for the real-data rows (protocol.md §4).
        student.load_state_dict(best)
        val_sel = _scores(student, test_loader, device)
        student.load_state_dict(last if not real else best)
        primary = _scores(student, test_loader, device)
        rec = {"variant": variant, "seed": seed, "spec": spec, "test_acc": primary["acc"],
               "generator_steps": rounds.generator_steps if rounds is not None else 0,
               "test_acc_val_selected": val_sel["acc"], "best_epoch": best_epoch, "collapsed": primary["collapsed"],
               "top_class_fraction": primary["top_class_fraction"], "test_pred": primary["pred"], "wall_s": wall,
               "params": student.param_counts(), "history": history}
        save_checkpoint(staging / "students" / f"{name}.pt", student.state_dict(), {"spec": spec, "variant": variant,
                                                                                  "seed": seed})
        write_json(rec_path, rec)  # last: its presence marks the student finished
        child.metrics({f"{STAGE}/test/acc": rec["test_acc"], f"{STAGE}/time/wall_s": wall,
                       f"{STAGE}/adversarial/generator_steps": rec["generator_steps"],
                       **({f"{STAGE}/test/acc_val_selected": val_sel["acc"]} if val_loader is not None else {})},
                      step=len(history))
        child.end()
        records[name] = rec

    metrics = summarise(records, val=val_loader is not None)
    metrics[f"{STAGE}/time/stage_s"] = time.perf_counter() - t_stage
    results = {"records": {k: {kk: vv for kk, vv in r.items() if kk != "history"} for k, r in records.items()},
               "summary": metrics, "pseudo_graphs": len(pseudo), "banks": banks, "fold_hash": split.fold_hash,
               "class_weights": class_weights.tolist() if class_weights is not None else None}
    write_json(staging / "results.json", results)
    fig = distill_curves(records["pseudo-s0"]["history"], STAGE)
    save_figure(fig, staging / "curves.png", logger, STAGE)
    logger.metrics(metrics)
    logger.artifact(staging / "results.json", "distill")
    logger.flush()
    files = [f"students/{n}.{ext}" for n in records for ext in ("pt", "json", "result.json")] + ["results.json", "curves.png"]
    manifest = Manifest.build(STAGE, cache_key, staging, files, volatile=("results.json", "students/*.result.json"),
                              metrics=metrics, info={"variants": sorted({v for v, _ in variants}), "seeds": dc.seeds,
                                    "fold_hash": split.fold_hash}, mlflow_run_id=logger.run_id)
    return publish(layout, STAGE, staging, manifest)


def summarise(records: dict[str, dict], val: bool = True) -> dict[str, float]:
    """Per variant: mean and std of test accuracy over seeds, val-selected accuracy (when there is a validation split:
    without one the "selected" epoch is the last), collapsed students, wall time; for the data-free students also the
    mean pairwise agreement of the seeds' test predictions."""
    out: dict[str, float] = {}
    by_variant: dict[str, list[dict]] = {}
    for r in records.values():
        by_variant.setdefault(r["variant"], []).append(r)
    for variant, rs in by_variant.items():
        suffix = "" if variant == "pseudo" else f"_{variant}"
        acc = np.array([r["test_acc"] for r in rs])
        out[f"{STAGE}/test/acc{suffix}"] = float(acc.mean())
        out[f"{STAGE}/test/acc_std{suffix}"] = float(acc.std())
        if val:
            out[f"{STAGE}/test/acc_val_selected{suffix}"] = float(np.mean([r["test_acc_val_selected"] for r in rs]))
        out[f"{STAGE}/test/collapsed{suffix}"] = float(sum(r["collapsed"] for r in rs))
        out[f"{STAGE}/time/wall_s{suffix}"] = float(np.mean([r["wall_s"] for r in rs]))
        if variant == "pseudo":
            out[f"{STAGE}/test/seed_agreement"] = seed_agreement([np.array(r["test_pred"]) for r in rs])
            for part, count in rs[0]["params"].items():
                out[f"{STAGE}/params/{part}"] = float(count)
    return out
