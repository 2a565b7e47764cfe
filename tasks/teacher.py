"""Prefect task of the teacher stage."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.runtime import flow_run

from gfkd.config import RunConfig
from gfkd.stages import teacher
from tasks.stage import prefect_cache_key, run_stage


@task(name="teacher", cache_key_fn=prefect_cache_key("teacher"), persist_result=True, cache_result_in_memory=False)
def teacher_task(cfg: RunConfig, run_root: str, parent_run_id: str | None = None, upstream: tuple[str, ...] = (),
                 force: bool = False, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """Train the teacher on the real training split, select on validation, save its checkpoint."""
    return run_stage("teacher", teacher.run, cfg, run_root, parent_run_id, upstream, force, flow_run.get_id())
