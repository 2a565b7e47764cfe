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

The tasks around the grid (the parent run, the report) are in tasks/benchmark.py. `benchmark-cell` stays here: it is
the unit the grid's task runner submits, and all it does is run the pipeline flow for an unfinished cell.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from gfkd.config import RunConfig
from gfkd.errors import GfkdError
from gfkd.io.atomic import write_json
from gfkd.layout import RunLayout
from gfkd.tracking import Tracker
from gfkd.versions import COMMAND_ENV
from gfkd.grid import BenchmarkSpec, Cell, benchmark_dir, grid_cells
from tasks.benchmark import EXPERIMENT, finished_metrics, open_benchmark_run, report_task
from flows.pipeline import pipeline
from flows.serve import tracking_server
from flows.signals import keep_in_flow


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
    os.environ[COMMAND_ENV] = cell.command  # every cell's, set each time: a worker may run another benchmark's later
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
    keep_in_flow()  # `gfkd benchmark`'s exit at once on Ctrl-C or SIGTERM, over Prefect's SIGTERM handler
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


@flow(name="gfkd-benchmark", log_prints=True)
def benchmark(spec: BenchmarkSpec) -> dict[str, Any]:
    """Run the pipeline over datasets × generators × splits and aggregate the table."""
    from flows.cli import _run_lock

    keep_in_flow()

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
