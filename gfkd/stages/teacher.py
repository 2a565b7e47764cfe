"""Teacher stage: train a GIN/GCN graph classifier on the real training split, select it on validation, save it.

Outputs in `<run>/teacher/`: `teacher.pt` (state_dict + `bn_eval_stats` tensors, loadable with weights_only=True),
`teacher.json` (model config, data metadata of protocol.md §1, split, selection), `history.json` (per-epoch metrics),
`curve.png`, and `manifest.json` last. Training saves a resumable state (`_train.pt`) every `run.checkpoint_every`
epochs into the staging folder; a rerun after a kill (same cache key) resumes from it with bitwise the same result.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric import seed_everything
from torch_geometric.loader import DataLoader

from gfkd.config import MODEL_SWITCH_KEYS, RunConfig
from gfkd.data.datasets import load_tu
from gfkd.data.metadata import dataset_metadata
from gfkd.data.splits import Split, make_split
from gfkd.errors import CheckpointError, StageError
from gfkd.io.atomic import write_json
from gfkd.io.checkpoint import load_checkpoint, save_checkpoint
from gfkd.io.manifest import Manifest
from gfkd.layout import RunLayout
from gfkd.models import GraphClassifier, build_classifier
from gfkd.models.bn_stats import bn_input_statistics
from gfkd.plots import training_curve
from gfkd.stages.common import StageOutcome, cached, publish, prepare_runtime, resumable_staging
from gfkd.tracking import NullLogger
from gfkd.train import evaluate, fit_classifier

STAGE = "teacher"
FILES = ["teacher.pt", "teacher.json", "history.json", "curve.png"]
TRAIN_STATE = "_train.pt"  # the resumable training state inside the staging folder


def load_dataset(cfg: RunConfig):
    """The run's graph-classification dataset, opened through the writable cache."""
    cache = cfg.data_cache
    return load_tu(cfg.data.dataset, cfg.data.root, cache, cfg.data.max_degree_cap, cfg.data.download)


def load_teacher(path: Path) -> tuple[GraphClassifier, dict, dict[str, torch.Tensor]]:
    """Rebuild the saved teacher in eval mode; returns (model, meta JSON, bn_eval_stats)."""
    state, meta, tensors = load_checkpoint(path)
    cfg = dict(meta["model"])
    model = build_classifier(cfg.pop("arch"), cfg.pop("in_dim"), cfg.pop("num_classes"), **cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model its {Path(path).with_suffix('.json').name} "
                              f"describes ({meta['model'].get('arch')}): the two files come from different teachers, "
                              f"rerun the teacher (gfkd run --force teacher)") from exc
    return model.eval(), meta, tensors.get("bn_eval_stats", {})


def check_teacher_dataset(meta: dict, cfg: RunConfig, path: Path, stage: str) -> None:
    """Refuse a teacher trained on another dataset than this run's (CheckpointError naming both)."""
    trained_on = meta.get("data", {}).get("dataset")
    if trained_on is not None and trained_on != cfg.data.dataset:
        raise CheckpointError(f"{stage}: the teacher {path} was trained on {trained_on}, this run's data.dataset is "
                              f"{cfg.data.dataset}: pass a teacher of {cfg.data.dataset} or set "
                              f"data.dataset={trained_on}")


def check_teacher_split(meta: dict, split: Split, cfg: RunConfig, path: Path, stage: str) -> None:
    """Refuse a teacher trained on another split than this run's (another partition, or another cv10 fold): this
    run's test graphs could be in its training set (StageError naming the teacher)."""
    trained = meta["split"]
    other_fold = split.protocol == "cv10" and trained.get("fold") != cfg.protocol.fold  # one hash covers all 10 folds
    if split.fold_hash != trained["fold_hash"] or other_fold:
        raise StageError(f"{stage}: the teacher {path} was trained on another split ({trained['protocol']} fold "
                         f"{trained.get('fold')}, seed {trained.get('seed')}; this run: {split.protocol} fold "
                         f"{cfg.protocol.fold}, seed {cfg.protocol.seed}): rerun the teacher with this run's protocol "
                         f"settings")


def run(cfg: RunConfig, layout: RunLayout, cache_key: str, logger: NullLogger = NullLogger(),
        force: bool = False) -> StageOutcome:
    """Train (or find finished) the teacher of this run."""
    if (done := cached(layout, STAGE, cache_key, force)) is not None:
        return done
    t0 = time.perf_counter()
    tc = cfg.teacher
    seed = cfg.split_seed
    seed_everything(seed)
    device = prepare_runtime(cfg.run)

    ds = load_dataset(cfg)
    split = make_split(ds.labels, cfg.protocol.name, cfg.protocol.fold, cfg.protocol.seed, cfg.protocol.val)
    subset = ds.subset
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(subset(split.train), batch_size=tc.batch_size, shuffle=True, generator=gen)
    val_loader = DataLoader(subset(split.val), batch_size=256) if len(split.val) else None
    test_loader = DataLoader(subset(split.test), batch_size=256)

    m = tc.model
    model = build_classifier(m.arch, ds.num_features, ds.num_classes, layers=m.layers, hidden=m.hidden,
                             pooling=m.pooling, bn=m.bn, residual=m.residual, dropout=m.dropout,
                             **cfg.model_switches).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.params({"teacher": tc.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json"),
                   "protocol": cfg.protocol.model_dump(mode="json"), "seed": seed,
                   "split": split.sizes(), "fold_hash": split.fold_hash,
                   "resolved": {"label_smoothing": tc.resolved_label_smoothing,
                                "weight_decay": tc.resolved_weight_decay, **cfg.model_switches}})

    staging = resumable_staging(layout, STAGE, cache_key, fresh=force)
    fit = fit_classifier(model, train_loader, val_loader, epochs=tc.epochs, lr=tc.lr,
                         weight_decay=tc.resolved_weight_decay, lr_step=tc.lr_step, lr_gamma=tc.lr_gamma,
                         label_smoothing=tc.resolved_label_smoothing, device=device, stage=STAGE,
                         on_epoch=lambda e, mt: logger.metrics(mt, step=e), checkpoint=staging / TRAIN_STATE,
                         checkpoint_every=cfg.run.checkpoint_every)
    model.load_state_dict(fit.best_state)
    test = evaluate(model, test_loader, device)  # once, after selection
    val = evaluate(model, val_loader, device) if val_loader else None
    with torch.no_grad():
        logits = torch.cat([model(b.x, b.edge_index, b.batch, b.num_graphs).abs().mean(-1)
                            for b in (b.to(device) for b in test_loader)])
    train_labels = ds.labels[split.train]
    majority = int(np.bincount(train_labels).argmax())

    bn_stats = bn_input_statistics(model, DataLoader(subset(split.train), batch_size=256), device)
    meta = {
        "model": model.config(),
        "data": dataset_metadata(ds, split.train),
        "split": {"protocol": split.protocol, "fold": cfg.protocol.fold, "seed": cfg.protocol.seed,
                  "sizes": split.sizes(), "fold_hash": split.fold_hash},
        "selection": {"best_epoch": fit.best_epoch, "rule": "lowest val loss" if val_loader else "last epoch"},
        "recipe": tc.model_dump(mode="json", exclude={"model": set(MODEL_SWITCH_KEYS)}),  # resolved in "model"
        "bn_eval_stats_layers": sorted({k.rsplit(".", 1)[0] for k in bn_stats}),
    }
    save_checkpoint(staging / "teacher.pt", model.state_dict(), meta, tensors={"bn_eval_stats": bn_stats})
    write_json(staging / "history.json", fit.history)
    fig = training_curve(fit.history, STAGE, fit.best_epoch)
    fig.savefig(staging / "curve.png", dpi=110)

    wall = time.perf_counter() - t0
    metrics = {"teacher/test/acc": test.acc, "teacher/test/loss": test.loss,
               "teacher/test/majority_acc": float((ds.labels[split.test] == majority).mean()),
               "teacher/test/mean_abs_logit": float(logits.mean()),
               "teacher/select/best_epoch": float(fit.best_epoch), "teacher/params/count": float(n_params),
               "teacher/time/wall_s": wall}
    if val is not None:
        metrics |= {"teacher/val/acc": val.acc, "teacher/val/loss": val.loss}
    logger.metrics(metrics, step=tc.epochs)  # the selected epoch's values, after the per-epoch curve
    for f in ("curve.png", "teacher.pt", "teacher.json", "history.json"):  # the files themselves, figure included
        logger.artifact(staging / f, "teacher")
    logger.flush()
    (staging / TRAIN_STATE).unlink(missing_ok=True)
    manifest = Manifest.build(STAGE, cache_key, staging, FILES, metrics=metrics,
                              info={"fold_hash": split.fold_hash, "sizes": split.sizes()},
                              mlflow_run_id=logger.run_id)
    return publish(layout, STAGE, staging, manifest)

