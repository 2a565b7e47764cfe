"""Prefect task of the generate stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.runtime import flow_run

from gfkd.config import RunConfig
from gfkd.stages import generate
from tasks.stage import prefect_cache_key, run_stage


@task(name="generate", cache_key_fn=prefect_cache_key("generate"), persist_result=True, cache_result_in_memory=False)
def generate_task(cfg: RunConfig, run_root: str, parent_run_id: str | None = None, upstream: tuple[str, ...] = (),
                  force: bool = False, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """Generate pseudo-graph shards from the teacher checkpoint alone."""
    teacher_dir = Path((inputs or {})["teacher"]).parent
    return run_stage("generate", generate.run, cfg, run_root, parent_run_id, upstream, force, flow_run.get_id(),
                     teacher_dir=teacher_dir)
