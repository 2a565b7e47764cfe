"""The benchmark flow: a grid of datasets × generators × splits, each cell one run of the pipeline flow.

    gfkd-benchmark (spec)                 cells, tracking, the grid, the table
      ├ open-benchmark-run                the benchmark's parent MLflow run (experiment gfkd-benchmark)
      ├ gfkd-benchmark-grid (cells)       on ThreadPoolTaskRunner(workers) or prefect-dask's DaskTaskRunner
      │   └ benchmark-cell × N            a finished cell returns at once; else the pipeline flow, as a subflow,
      │                                   in <runs_dir>/<dataset>-<generator>-fold<i> (seed<i> under holdout)
      └ benchmark-report                  the table → <runs_dir>/<name>/results.{md,json}, --out, the parent run

A cell is finished when every stage's manifest is valid for the cell's config, upstream digests and code (the
pipeline's own cache key): such a cell is not re-entered, so rerunning the command after a failure or a kill
runs only the unfinished cells, and inside them only the unfinished stages. A failed cell is retried
(`spec.retries`) and, if it still fails, reported; the table holds the finished cells. The benchmark holds its
folder's lock, so a second one of the same name refuses, and it ends as KILLED the runs a killed earlier one left
RUNNING in the folder's database.

Fanned out (workers > 1 or Dask) the cells log to one MLflow tracking server (`MLFLOW_TRACKING_URI`, or an
`mlflow server` started on 127.0.0.1 over `<runs_dir>/<name>/mlflow.db`); run one at a time, each cell keeps its
own `mlflow.db` as `gfkd run` does.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from gfkd.benchmark import CellResult, aggregate, markdown_table, table_metrics
from gfkd.config import RunConfig
from gfkd.errors import GfkdError
from gfkd.io.atomic import write_atomic, write_json
from gfkd.io.manifest import valid_manifest
from gfkd.layout import RunLayout
from gfkd.tracking import Tracker
from gfkd.versions import versions_line
from tasks.cache import stage_key
from flows.grid import BenchmarkSpec, Cell, benchmark_dir, grid_cells
from flows.pipeline import STAGE_TASKS, pipeline
from flows.serve import tracking_server

EXPERIMENT = "gfkd-benchmark"


def finished_metrics(cfg: RunConfig, root: Path) -> dict[str, float] | None:
    """The merged stage metrics if every stage of the pipeline is done for this config, else None."""
    layout, upstream, metrics = RunLayout(root), (), {}
    for stage in STAGE_TASKS:
        m = valid_manifest(layout.manifest(stage), stage_key(cfg, stage, upstream))
        if m is None:
            return None
        metrics |= m.metrics
        upstream = (*upstream, m.digest)
    return metrics


def _run_pipeline(cfg: RunConfig, layout: RunLayout) -> list[dict[str, Any]]:
    """What `gfkd run` does for one folder: lock, config.json, the pipeline flow, summary.json."""
    from flows.cli import _check_data, _run_lock  # the checks and the one-writer lock of `gfkd run`

    with _run_lock(layout):
        _check_data(cfg)
        write_json(layout.config, cfg.model_dump(mode="json"))
        t0 = time.perf_counter()
        storage = layout.prefect_storage.resolve()  # cache records stay per cell (stage keys repeat across cells)
        records = pipeline.with_options(result_storage=storage)(cfg, str(layout.root.resolve()), [])
        write_json(layout.summary, {"run": cfg.run_name, "run_dir": str(layout.root.resolve()),
                                    "dataset": cfg.data.dataset, "wall_s": time.perf_counter() - t0,
                                    "stages": {r["stage"]: r for r in records}})
    return records


@task(name="benchmark-cell", cache_policy=NO_CACHE, persist_result=False)
def cell_task(cell: Cell, tracking_uri: str | None) -> dict[str, Any]:
    """Run one cell's pipeline unless the cell is finished; a failed stage fails the task (and so is retried)."""
    if tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):  # a worker process of a remote Dask cluster
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    layout = RunLayout(Path(cell.root))
    if finished_metrics(cell.cfg, layout.root) is not None:
        return {"cell": cell.name, "status": "finished", "stages": {}}
    records = _run_pipeline(cell.cfg, layout)
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        raise GfkdError(f"cell {cell.name}: stage {failed[0]['stage']} failed: {failed[0]['error']}")
    return {"cell": cell.name, "status": "ran", "stages": {r["stage"]: r["status"] for r in records}}


def task_runner(spec: BenchmarkSpec):
    """ThreadPoolTaskRunner(workers); or a DaskTaskRunner on a local cluster or at `dask_address`."""
    if spec.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=spec.dask_address)
    if spec.dask:
        from prefect_dask import DaskTaskRunner

        shape = ({"n_workers": spec.workers, "threads_per_worker": 1} if spec.dask_processes
                 else {"n_workers": 1, "threads_per_worker": spec.workers})
        return DaskTaskRunner(cluster_kwargs={**shape, "processes": spec.dask_processes, "dashboard_address": ":0"})
    return ThreadPoolTaskRunner(max_workers=spec.workers)


@flow(name="gfkd-benchmark-grid")
def run_grid(cells: list[Cell], retries: int, tracking_uri: str | None) -> list[dict[str, Any]]:
    """Submit every cell; wait for all; a cell that still fails after its retries is reported, not raised."""
    futures = [cell_task.with_options(retries=retries, retry_delay_seconds=2, task_run_name=c.name)
               .submit(c, tracking_uri) for c in cells]
    wait(futures)
    out = []
    for c, f in zip(cells, futures):
        if f.state.is_completed():
            out.append(f.result())
        else:
            exc = f.state.result(raise_on_failure=False)
            out.append({"cell": c.name, "status": "failed", "error": str(exc)[:2000], "stages": {}})
    return out


@task(name="open-benchmark-run", cache_policy=NO_CACHE, persist_result=False)
def open_benchmark_run(spec: BenchmarkSpec, folder: str) -> str:
    """The benchmark's parent MLflow run, with the grid as params."""
    from prefect.runtime import flow_run

    Path(folder).mkdir(parents=True, exist_ok=True)
    logger = Tracker(RunLayout(Path(folder)), EXPERIMENT).start_run(spec.name, tags={
        "gfkd.benchmark": spec.name, "prefect.flow_run_id": flow_run.get_id() or "", "gfkd.versions": versions_line()})
    logger.params({"datasets": ",".join(spec.datasets), "generators": ",".join(spec.generators),
                   "splits": ",".join(map(str, spec.splits)), "overrides": " ".join(spec.overrides),
                   "config": spec.config or "", "workers": spec.workers, "dask": spec.dask or bool(spec.dask_address)})
    return logger.run_id


@task(name="benchmark-report", cache_policy=NO_CACHE, persist_result=False)
def report_task(spec: BenchmarkSpec, cells: list[Cell], records: list[dict[str, Any]], folder: str,
                run_id: str) -> dict[str, Any]:
    """Aggregate the finished cells; write results.json, results.md (and `spec.out`); log them on the parent run."""
    results = []
    for c, rec in zip(cells, records):
        metrics = finished_metrics(c.cfg, Path(c.root)) if rec["status"] != "failed" else None
        if metrics is not None:
            results.append(CellResult(c.dataset, c.generator, c.split, metrics))
    rows = aggregate(results)
    word = "folds" if cells[0].cfg.protocol.name == "cv10" else "split seeds"
    failed = [r["cell"] for r in records if r["status"] == "failed"]
    text = (f"# Benchmark `{spec.name}`: test accuracy (%)\n\n"
            + (f"Command: `{spec.command}`\n\n" if spec.command else "")
            + f"Mean ± population std over {word} (n per entry); {len(results)} of {len(cells)} cells finished"
            + (f"; failed: {', '.join(failed)} (rerun the same command to resume them)" if failed else "")
            + f". Each cell is one pipeline run in `{Path(cells[0].root).parent}/<cell>`.\n\n"
            + ("The group rows ran on the real training graphs (`group.graph.data=real`): with-data reference rows at "
               "the val-selected epoch, not data-free, whatever their generator column says.\n\n"
               if cells[0].cfg.group.graph.data == "real" else "") + markdown_table(rows))
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


@flow(name="gfkd-benchmark", log_prints=True)
def benchmark(spec: BenchmarkSpec) -> dict[str, Any]:
    """Run the pipeline over datasets × generators × splits and aggregate the table."""
    from flows.cli import _run_lock

    cells = grid_cells(spec)
    folder = benchmark_dir(spec)
    with _run_lock(RunLayout(folder), "--name"):  # one benchmark per folder, so every RUNNING run there is dead
        if RunLayout(folder).mlflow_db.exists():  # a killed earlier benchmark's runs (not under $MLFLOW_TRACKING_URI)
            Tracker(RunLayout(folder), EXPERIMENT).end_orphans()
        with tracking_server(folder) if spec.fanned_out else nullcontext() as uri:
            run_id = open_benchmark_run(spec, str(folder))
            records = run_grid.with_options(task_runner=task_runner(spec))(cells, spec.retries, uri)
            report = report_task(spec, cells, records, str(folder), run_id)
    return {"folder": str(folder), "cells": records, **report}
