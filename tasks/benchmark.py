"""Prefect tasks of the benchmark flow around its cells: the parent MLflow run, and the report of the finished cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from gfkd.benchmark import CellResult, aggregate, fold_hash_mismatches, report_markdown, table_metrics
from gfkd.config import STAGES, RunConfig, stages_hash
from gfkd.grid import BenchmarkSpec, Cell, base_config
from gfkd.io.atomic import write_atomic, write_json
from gfkd.io.manifest import load_manifest, valid_manifest
from gfkd.layout import RunLayout
from gfkd.tracking import Tracker
from gfkd.versions import runtime_line, versions_line
from tasks.cache import stage_key

EXPERIMENT = "gfkd-benchmark"


def finished_metrics(cfg: RunConfig, root: Path) -> dict[str, float] | None:
    """The merged stage metrics if every stage of the pipeline is done for this config, else None."""
    layout, upstream, metrics = RunLayout(root), (), {}
    for stage in STAGES:
        m = valid_manifest(layout.manifest(stage), stage_key(cfg, stage, upstream))
        if m is None:
            return None
        metrics |= m.metrics
        upstream = (*upstream, m.digest)
    return metrics


@task(name="open-benchmark-run", cache_policy=NO_CACHE, persist_result=False)
def open_benchmark_run(spec: BenchmarkSpec, folder: str) -> str:
    """Create the benchmark's parent MLflow run, with the grid as params; return its id."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    logger = Tracker(RunLayout(Path(folder)), EXPERIMENT).start_run(spec.name, tags={
        "gfkd.benchmark": spec.name, "prefect.flow_run_id": flow_run.get_id() or "", "gfkd.versions": versions_line()})
    logger.params({"datasets": ",".join(spec.datasets), "generators": ",".join(spec.generators),
                   "splits": ",".join(map(str, spec.splits)), "overrides": " ".join(spec.overrides),
                   "config": spec.config or "", "workers": spec.workers, "dask": spec.dask or bool(spec.dask_address)})
    return logger.run_id


def report_facts(spec: BenchmarkSpec, roots: list[Path]) -> dict[str, str]:
    """protocol.md §7's facts for the benchmark page: the devices as the finished cells' own reports state them (a
    remote Dask cluster's cells ran on its machines), the shared settings, the versions of this process."""
    cfg = base_config(spec)
    devices = [json.loads(p.read_text())["facts"]["device"] for root in roots
               if (p := root / "evaluate" / "results.json").is_file()]
    return {"device": "; ".join(dict.fromkeys(devices)) or "— (no finished cell)",
            "runtime": runtime_line(cfg.run.threads, cfg.run.deterministic),
            "config hash": f"{stages_hash(cfg)} (the settings every cell shares, before the grid sets its dataset, "
                           "generator and split)",
            "versions": versions_line()}


@task(name="benchmark-report", cache_policy=NO_CACHE, persist_result=False)
def report_task(spec: BenchmarkSpec, cells: list[Cell], records: list[dict[str, Any]], folder: str,
                run_id: str) -> dict[str, Any]:
    """Aggregate the finished cells; write results.json, results.md (and `spec.out`); log them on the parent run."""
    results, roots = [], []
    for c, rec in zip(cells, records):
        metrics = finished_metrics(c.cfg, Path(c.root)) if rec["status"] != "failed" else None
        if metrics is not None:
            teacher = load_manifest(RunLayout(Path(c.root)).manifest("teacher"))
            results.append(CellResult(c.dataset, c.generator, c.split, metrics, teacher.info.get("fold_hash", "")))
            roots.append(Path(c.root))
    rows = aggregate(results)
    failed = [r["cell"] for r in records if r["status"] == "failed"]
    text = report_markdown(spec.name, spec.command, "folds" if cells[0].cfg.protocol.name == "cv10" else "split seeds",
                           len(results), len(cells), failed, str(Path(cells[0].root).parent),
                           cells[0].cfg.group.graph.data == "real", rows, report_facts(spec, roots),
                           list(spec.generators), cells[0].cfg.distill.recipe,
                           fold_hash_mismatches(results) if any(r.fold_hash for r in results) else None,
                           list(spec.datasets))
    folder_p = Path(folder)
    write_json(folder_p / "results.json", {
        "spec": json.loads(spec.model_dump_json()), "cells": records,
        "rows": [{"dataset": r.dataset, "method": r.method, "generator": r.generator, "mean": r.mean, "std": r.std,
                  "n": r.n, "runs": r.runs, "splits": list(r.splits), "values": list(r.values)} for r in rows]})
    for path in [folder_p / "results.md", *([Path(spec.out)] if spec.out else [])]:
        write_atomic(path, lambda tmp: tmp.write_text(text))
    tracker = Tracker(RunLayout(folder_p), EXPERIMENT)
    logger = tracker.logger(run_id)
    logger.metrics(table_metrics(rows) | {"benchmark/cells/finished": len(results), "benchmark/cells/failed":
                                          len(failed)})
    logger.tags({f"gfkd.cell.{r['cell']}": r["status"] for r in records})
    logger.artifact(folder_p / "results.md")
    logger.artifact(folder_p / "results.json")
    logger.flush()
    tracker.end_run(run_id, "FAILED" if failed else "FINISHED")
    return {"table": text, "failed": failed, "finished": len(results)}
