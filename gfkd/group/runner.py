"""`gfkd group`: one node-level group method on one citation graph over several seeds, written and tracked.

Writes, under `<run>/group/`: `seed-<s>.json` (per-epoch accuracies of every student, loss terms, the report),
`results.json` (per-seed numbers and their mean ± std) and `results.md` (the table). MLflow (through
`gfkd.tracking`): one parent run, one nested run per seed, one nested run per student under its seed.

A seed's file carries the key of the config and code that made it: a rerun of the same command (after a failure
or Ctrl-C) keeps the seeds already written under that key, replays their curves into MLflow, and trains the rest.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

from gfkd.config import RunConfig
from gfkd.data.datasets import PLANETOID, resolve_data_root
from gfkd.errors import ConfigError
from gfkd.group.report import NUMBERS, markdown_table, summarize
from gfkd.io.atomic import remove_leftovers, write_atomic, write_json
from gfkd.layout import RunLayout
from gfkd.stages.common import prepare_runtime

log = logging.getLogger(__name__)


def check_node_dataset(name: str, source: str | None = None) -> str:
    """The canonical Planetoid name, or a ConfigError naming where `name` came from (default: --dataset) and the fix."""
    if name.lower() not in PLANETOID:
        sets = ", ".join(PLANETOID.values())
        if source is None:
            raise ConfigError(f"--dataset '{name}' is not a node-classification set: choose one of {sets} (a "
                              "graph-classification set runs its group inside `gfkd run`)")
        raise ConfigError(f"data.dataset '{name}' (from {source}) is not a node-classification set: gfkd group runs on "
                          f"{sets}; pass e.g. --dataset Cora")
    return PLANETOID[name.lower()]


def run_name(cfg: RunConfig) -> str:
    return cfg.run.name or f"group-{cfg.data.dataset.lower()}-{cfg.group.backbone}-{cfg.group.method}"


def start_folder(layout: RunLayout, cfg: RunConfig) -> bool:
    """Write the run's config.json; when the folder holds results of another config, remove them first (the run
    redoes every seed), so an interrupted run never leaves old results beside the new config. True if it did."""
    new = cfg.model_dump(mode="json")
    old = json.loads(layout.config.read_text()) if layout.config.is_file() else None
    stale = layout.stage_dir("group")
    cleared = old is not None and old != new and stale.exists()
    if cleared:
        log.info("%s: results of another config removed (the config changed)", stale)
        shutil.rmtree(stale)
    write_json(layout.config, new)
    return cleared


def _kept_seed(path: Path, seed: int, key: str) -> dict | None:
    """The stored file of `seed` when it is whole and was written under `key` (same config, code, device and
    threads); else None."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or cut short (files are renamed into place, so only by hand)
        return None
    if not isinstance(stored, dict) or stored.get("key") != key or stored.get("report", {}).get("seed") != seed:
        return None
    return stored


def _replay(stored: dict, warmup_epochs: int, on_epoch: Callable[[int, dict], None]) -> None:
    """Call `on_epoch(epoch, record)` with the records a kept seed's training passed it, from its stored file
    (losses: [W + E] dicts; val_acc, test_acc: [E, K]; ensemble_test: [E])."""
    for epoch, losses in enumerate(stored["losses"]):
        record = dict(losses)
        if epoch >= warmup_epochs:  # evaluated epochs: the distillation phase
            i = epoch - warmup_epochs
            record |= {"val_acc": stored["val_acc"][i], "test_acc": stored["test_acc"][i],
                       "ensemble_test_acc": stored["ensemble_test"][i]}
        on_epoch(epoch, record)


def _one_seed(seed: int, g, s, out: Path, key: str, tracker, parent_id: str | None) -> tuple[dict, bool]:
    """Train one seed's group (or keep its file, written under `key`), write it and log it under `parent_id`;
    return its report and whether it was kept."""
    from gfkd.group.node import loss_terms, train_group

    stored = _kept_seed(out / f"seed-{seed}.json", seed, key) if key else None
    status = {"gfkd.status": "cached" if stored else "ran"}
    seed_log = tracker.start_run(f"seed-{seed}", parent_id, tags=status) if tracker else None
    students = [tracker.start_run(f"seed-{seed}-student-{k}", seed_log.run_id, tags=status)
                for k in range(s.students)] if tracker else []

    def on_epoch(epoch: int, rec: dict) -> None:
        if seed_log is None:
            return
        seed_log.metrics({f"group/train/{k}": v for k, v in loss_terms(rec).items()}, step=epoch)  # accuracies below
        if "val_acc" in rec:
            seed_log.metrics({"group/test/ensemble_acc": rec["ensemble_test_acc"]}, step=epoch)
            for k, lg in enumerate(students):
                lg.metrics({"group/val/acc": float(rec["val_acc"][k]), "group/test/acc": float(rec["test_acc"][k])},
                           step=epoch)

    if stored:
        _replay(stored, s.warmup_epochs, on_epoch)
        r = stored["report"]
    else:
        run = train_group(g, s, seed, on_epoch)
        r = run.report | {"seed": seed}
        write_json(out / f"seed-{seed}.json", {"key": key, "report": r, "val_acc": run.val_acc.tolist(),
                                               "test_acc": run.test_acc.tolist(),
                                               "ensemble_test": run.ensemble_test.tolist(),
                                               "losses": run.losses, "epoch_s": run.epoch_s})
    log.info("seed %d: mean over students %.4f, val-best student %.4f, ensemble %.4f (ê = %d)%s",
             seed, r["mean_students"], r["val_best_student"], r["ensemble"], r["epoch"],
             ", kept from an earlier run of this config and code" if stored else "")
    if seed_log is not None:
        seed_log.metrics({f"group/test/{k}": r[k] for k in NUMBERS}
                         | {"group/val/selected_epoch": r["epoch"],
                            "group/val/best_student": r["best_val_student"], "group/time/wall_s": r["wall_s"]})
        for lg in [*students, seed_log]:
            lg.flush()
            tracker.end_run(lg.run_id)
    return r, stored is not None


def run_node_group(cfg: RunConfig, seeds: list[int], layout: RunLayout, tracker=None, key: str = "") -> dict:
    """Train `cfg.group.method` on `cfg.data.dataset` once per seed; write and log; return results.json's dict.

    Args:
        cfg: resolved config (data.dataset a Planetoid name, group.* the method and switches).
        seeds: group seeds, each once; students of seed s start from torch seeds s + k.
        layout: the run folder; outputs go to `layout.stage_dir("group")`.
        tracker: a `gfkd.tracking.Tracker`, or None to log nothing.
        key: the config-and-code key (tasks.cache.node_group_key); each seed's file holds it with the device and
            the thread count appended, and a seed whose file holds the same is kept, not trained again. "" keeps none.
    """
    from gfkd.group.node import load_citation, settings_from_config  # PyG: inside the run's TMPDIR

    dataset = check_node_dataset(cfg.data.dataset)
    device = prepare_runtime(cfg.run)  # threads, deterministic kernels, the device (a one-line error for a missing GPU)
    import torch

    # run.device=auto and run.threads=auto resolve per machine, and the floats depend on both
    key = f"{key}@{device}/threads={torch.get_num_threads()}" if key else ""
    g = load_citation(dataset, resolve_data_root(cfg.data.root), cfg.data_cache, cfg.data.download, device)
    s = settings_from_config(cfg.group)
    out = layout.stage_dir("group")
    remove_leftovers(out)  # half-written files of a killed run (the caller holds the folder's lock)
    parent = tracker.start_run("group", tags={"gfkd.stage": "group", "gfkd.dataset": dataset}) if tracker else None
    if parent:
        parent.params({"group": cfg.group.model_dump(mode="json"), "data.dataset": dataset, "seeds": seeds,
                       "resolved": vars(s)})
    per_seed, kept = [], []
    try:
        for seed in seeds:
            r, was_kept = _one_seed(seed, g, s, out, key, tracker, parent.run_id if parent else None)
            per_seed.append(r)
            kept += [seed] if was_kept else []
    except BaseException:
        if parent:
            tracker.end_run(parent.run_id, "FAILED")
        raise
    summary = summarize(per_seed)
    results = {"dataset": dataset, "backbone": s.backbone, "method": s.method, "seeds": seeds, "kept_seeds": kept,
               "device": str(device), "settings": vars(s), "summary": summary, "per_seed": per_seed}
    write_json(out / "results.json", results)
    table = markdown_table([(f"{s.method} ({s.backbone.upper()}, K = {s.students})", summary)])
    text = (f"# {dataset}: group {s.method}, {s.backbone.upper()}\n\ntest accuracy (%) at the val-selected epoch, "
            f"mean ± std over seeds {seeds[0]}..{seeds[-1]} ({len(seeds)})\n\n{table}")
    write_atomic(out / "results.md", lambda tmp: tmp.write_text(text))
    if parent:
        parent.metrics({f"group/test/{k}_mean": v["mean"] for k, v in summary.items()}
                       | {f"group/test/{k}_std": v["std"] for k, v in summary.items()})
        parent.artifact(out / "results.json")
        parent.artifact(out / "results.md")
        parent.flush()
        tracker.end_run(parent.run_id)
    return results
