"""Group stage of the pipeline: K students learn together on the pseudo-graph shards (OAD, oad.md §6).

Reads the generate stage's shards (the teacher's logits are stored in them, and checked against the teacher
checkpoint) and measures the group on the real validation and test graphs, evaluation only. `group.graph.data=real`
trains the same group on the real training graphs instead, with their true labels and the teacher's logits on them:
a with-data reference row, not a data-free one. Outputs in
`<run>/group/`: `students/student-<k>.pt` + `.json` (last epoch), `results.json` (the numbers of oad.md §8 and the
per-epoch history), `curves.png`, `manifest.json` last. Each student is a nested MLflow run under the stage's run.
Training saves a resumable state (`_train.pt`) every `run.checkpoint_every` epochs into the staging folder; a rerun
after a kill (same cache key) resumes from it with bitwise the same result.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch_geometric import seed_everything
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from gfkd.config import RunConfig
from gfkd.data.splits import make_split
from gfkd.distillation import check_graph_logits
from gfkd.group.graph import train_graph_group
from gfkd.io.atomic import write_json
from gfkd.io.checkpoint import save_checkpoint
from gfkd.io.manifest import Manifest
from gfkd.layout import RunLayout
from gfkd.models.classifier import GraphClassifier
from gfkd.models.widened import build_student
from gfkd.plots import group_curves
from gfkd.stages.common import StageOutcome, cached, prepare_runtime, publish, resumable_staging, save_figure
from gfkd.stages.distill import load_pseudo_graphs, student_spec
from gfkd.stages.teacher import check_teacher_dataset, check_teacher_split, load_dataset, load_teacher
from gfkd.tracking import NullLogger
from gfkd.train import logits_of

STAGE = "group"
TRAIN_STATE = "_train.pt"  # the resumable training state inside the staging folder


def run(cfg: RunConfig, layout: RunLayout, cache_key: str, logger: NullLogger = NullLogger(), force: bool = False,
        teacher_dir: Path | None = None, generate_dir: Path | None = None) -> StageOutcome:
    """Train (or find finished) the pseudo-graph group of this run."""
    if (done := cached(layout, STAGE, cache_key, force)) is not None:
        return done
    t0 = time.perf_counter()
    gc = cfg.group.graph
    device = prepare_runtime(cfg.run, flush_denormal=True)  # as generate leaves it: a fresh run's arithmetic
    teacher_pt = Path(teacher_dir or layout.stage_dir("teacher")) / "teacher.pt"
    teacher, meta, _ = load_teacher(teacher_pt)
    check_teacher_dataset(meta, cfg, teacher_pt, STAGE)  # it is evaluated on this run's dataset
    teacher = teacher.to(device)
    if gc.data == "pseudo":
        graphs = load_pseudo_graphs(Path(generate_dir or layout.stage_dir("generate")) / "shards")
        check_graph_logits(teacher, graphs, device, STAGE)

    ds = load_dataset(cfg)  # data-free: evaluation only, validation and test graphs
    split = make_split(ds.labels, cfg.protocol.name, cfg.protocol.fold, cfg.protocol.seed, cfg.protocol.val)
    check_teacher_split(meta, split, cfg, teacher_pt, STAGE)
    val_loader = DataLoader(ds.subset(split.val), batch_size=256) if len(split.val) else None
    test_loader = DataLoader(ds.subset(split.test), batch_size=256)
    if gc.data == "real":  # the with-data reference: true labels as ŷ
        graphs = with_teacher_logits(ds.subset(split.train), teacher, device)
        gc = gc.model_copy(update={"label_source": "target"})

    widened = gc.student == "widened"
    spec = student_spec(cfg.distill.model_copy(update={"head": "reuse" if widened else "own"}), teacher,
                        real=not widened)
    students = []
    for k in range(gc.students):
        seed_everything(1000 * cfg.split_seed + k)  # student k from seed + k
        students.append(build_student(spec, teacher))
    logger.params({"group": gc.model_dump(mode="json"), "student": spec, "train_graphs": len(graphs)})
    children = [logger.child(f"student-{k}", {"gfkd.stage": STAGE, "gfkd.student": str(k)})
                for k in range(gc.students)]

    def on_epoch(epoch: int, record: dict, per_student: list[dict]) -> None:
        logger.metrics(record, step=epoch)
        for child, rec in zip(children, per_student):
            child.metrics(rec, step=epoch)

    staging = resumable_staging(layout, STAGE, cache_key, fresh=force)
    res = train_graph_group(students, graphs, gc, seed=cfg.split_seed, device=device, val_loader=val_loader,
                            test_loader=test_loader, teacher=teacher, on_epoch=on_epoch, stage=STAGE,
                            checkpoint=staging / TRAIN_STATE, checkpoint_every=cfg.run.checkpoint_every,
                            curriculum=cfg.group_curriculum, temperature=cfg.group_temperature)
    for child in children:
        child.end()

    states, n, selection = res.last_states, res.numbers, "last"
    if gc.data == "real" and res.selected_states is not None:  # a with-data row: the val-selected epoch
        states, selection = res.selected_states, "val"  # (protocol.md §4), the last epoch's numbers as *_last
        n = res.selected_numbers | {f"{k}_last": v for k, v in n.items()
                                    if k.startswith("acc") and not k.endswith("_val_selected")} | {
            "val_selected_epoch": n["val_selected_epoch"]}
    (staging / "students").mkdir(exist_ok=True)
    files = []
    for k, state in enumerate(states):
        save_checkpoint(staging / "students" / f"student-{k}.pt", state, {"spec": spec, "student": k})
        files += [f"students/student-{k}.pt", f"students/student-{k}.json"]
    metrics = {f"{STAGE}/test/{k}": v for k, v in n.items() if k.startswith("acc")}
    metrics |= {f"{STAGE}/test/{k}": n[k] for k in ("collapsed", "collapsed_picked", "collapsed_ensemble") if k in n}
    metrics[f"{STAGE}/time/wall_s"] = time.perf_counter() - t0
    if gc.anchor_temperature == "calibrated":
        metrics[f"{STAGE}/train/anchor_tau"] = res.anchor_tau
    if "pick_beat_mean" in n:
        metrics[f"{STAGE}/pick/beat_mean"] = n["pick_beat_mean"]
    write_json(staging / "results.json", {"numbers": n, "history": res.history, "per_student": res.per_student,
                                          "spec": spec, "fold_hash": split.fold_hash, "data": gc.data,
                                          "curriculum": gc.curriculum, "label_source": gc.label_source,
                                          "anchor_temperature": cfg.group_temperature.model_dump(mode="json")
                                          if cfg.group_temperature is not None else res.anchor_tau,
                                          "train_graphs": len(graphs), "selection": selection})
    fig = group_curves(res.history, STAGE)
    save_figure(fig, staging / "curves.png", logger, STAGE)
    logger.artifact(staging / "results.json", "group")  # the per-student numbers and history, as distill's
    logger.metrics(metrics, step=gc.warmup_epochs + gc.epochs)
    logger.flush()
    (staging / TRAIN_STATE).unlink(missing_ok=True)
    manifest = Manifest.build(STAGE, cache_key, staging, [*files, "results.json", "curves.png"], metrics=metrics,
                              info={"method": gc.method, "students": gc.students, "data": gc.data,
                                    "selection": selection} | ({"anchor_tau": res.anchor_tau}
                                                               if gc.anchor_temperature == "calibrated" else {}),
                              mlflow_run_id=logger.run_id)
    return publish(layout, STAGE, staging, manifest)


@torch.no_grad()
def with_teacher_logits(graphs: list[Data], teacher: GraphClassifier, device: torch.device) -> list[Data]:
    """Copies of real graphs carrying the frozen teacher's logits (teacher_logits: [1, C]) and graph_id, as the
    pseudo-graphs do; y stays the true label."""
    z, _ = logits_of(teacher, DataLoader(graphs, batch_size=256), device)
    out = [g.clone() for g in graphs]
    for i, g in enumerate(out):
        g.teacher_logits, g.graph_id = z[i:i + 1], torch.tensor([i])
    return out
