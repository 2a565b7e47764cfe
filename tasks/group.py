"""Prefect task of the group stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.runtime import flow_run

from gfkd.config import RunConfig
from gfkd.stages import group
from tasks.stage import prefect_cache_key, run_stage


@task(name="group", cache_key_fn=prefect_cache_key("group"), persist_result=True, cache_result_in_memory=False)
def group_task(cfg: RunConfig, run_root: str, parent_run_id: str | None = None, upstream: tuple[str, ...] = (),
               force: bool = False, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """Train the pseudo-graph group (OAD) on the shards; evaluate it on the real held-out graphs."""
    inputs = inputs or {}
    return run_stage("group", group.run, cfg, run_root, parent_run_id, upstream, force, flow_run.get_id(),
                     teacher_dir=Path(inputs["teacher"]).parent, generate_dir=Path(inputs["generate"]).parent)
