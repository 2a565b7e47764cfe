"""The gfkd pipeline flow: wires the stage tasks in order; no torch, no file I/O, no loops over epochs.

Each stage task is cached on (stage config, upstream manifests' digests, code version), so rerunning the same
command skips finished stages; `force` names stages to redo; `until` names the last stage to run. A failed stage
stops the stages after it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow

from gfkd.config import RunConfig
from gfkd.errors import GfkdError
from gfkd.layout import RunLayout
from flows.signals import keep_in_flow
from tasks.distill import distill_task
from tasks.evaluate import evaluate_task
from tasks.generate import generate_task
from tasks.group import group_task
from tasks.teacher import teacher_task
from tasks.tracking import close_pipeline_run, open_pipeline_run

STAGE_TASKS = {"teacher": teacher_task, "generate": generate_task, "distill": distill_task, "group": group_task,
               "evaluate": evaluate_task}


progress = logging.getLogger("gfkd.progress")  # `gfkd run` and `gfkd benchmark` show it as plain lines on stderr


def _progress(run: str, text: str) -> None:
    """One line as a stage starts and ends, so a log file or a scheduler shows where a run is (the stage table and
    the bars of a terminal come only at the end, or only in a terminal)."""
    progress.info("gfkd: %s: %s", run, text)


def _failure(stage: str, state: Any, wall: float) -> dict[str, Any]:
    exc = state.result(raise_on_failure=False)
    return {"stage": stage, "status": "failed", "wall_s": wall, "metrics": {}, "mlflow_run_id": None,
            "error": str(exc), "error_type": type(exc).__name__, "user_error": isinstance(exc, GfkdError)}


@flow(name="gfkd-pipeline", log_prints=True)
def pipeline(cfg: RunConfig, run_root: str, force: list[str] | None = None,
             until: str | None = None) -> list[dict[str, Any]]:
    """Run teacher → generate → distill → group → evaluate (or up to `until`) for one dataset and split."""
    keep_in_flow()  # `gfkd run`'s exit at once on Ctrl-C or SIGTERM, over Prefect's SIGTERM handler
    force = set(force or ())
    parent = open_pipeline_run(cfg, run_root)
    records: list[dict[str, Any]] = []
    upstream: tuple[str, ...] = ()
    inputs: dict[str, str] = {}  # upstream stage -> its manifest path
    layout = RunLayout(Path(run_root))
    last = list(STAGE_TASKS).index(until) + 1 if until in STAGE_TASKS else len(STAGE_TASKS)
    for i, (stage, stage_task) in enumerate(STAGE_TASKS.items(), 1):
        step = f"stage {i}/{last} {stage}"
        _progress(cfg.run_name, f"{step} ...")
        t0 = time.perf_counter()
        task = stage_task.with_options(refresh_cache=True) if stage in force else stage_task
        state = task(cfg, run_root, parent, upstream, stage in force, inputs, return_state=True)
        wall = time.perf_counter() - t0
        if not state.is_completed():
            records.append(_failure(stage, state, wall))
            _progress(cfg.run_name, f"{step} failed after {wall:.1f} s")
            break
        rec = dict(state.result())
        rec["status"] = "cached" if state.name == "Cached" else rec["status"]
        rec["wall_s"] = wall
        _progress(cfg.run_name, f"{step} {rec['status']} in {wall:.1f} s")
        records.append(rec)
        upstream = (*upstream, rec["digest"])
        rec["manifest"] = inputs[stage] = str(layout.manifest(stage))  # not a cached record's: the folder may have moved
        if stage == until:
            break
    close_pipeline_run(cfg, run_root, parent, records)
    return records
