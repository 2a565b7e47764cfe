"""What every stage task shares: the Prefect cache key function and the MLflow run around a stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gfkd.config import RunConfig
from gfkd.io.manifest import valid_manifest
from gfkd.layout import RunLayout
from gfkd.stages.common import StageOutcome
from gfkd.tracking import Tracker
from tasks.cache import stage_key


def experiment_name(cfg: RunConfig) -> str:
    return f"gfkd-{cfg.data.dataset}"


def prefect_cache_key(stage: str) -> Callable[[Any, dict[str, Any]], str | None]:
    """A Prefect cache_key_fn: the stage key while the stage's manifest on disk is valid for it, else None (run)."""

    def key_fn(_context: Any, params: dict[str, Any]) -> str | None:
        if params.get("force"):
            return None
        cfg: RunConfig = params["cfg"]
        key = stage_key(cfg, stage, tuple(params.get("upstream", ())))
        ok = valid_manifest(RunLayout(Path(params["run_root"])).manifest(stage), key) is not None
        return f"gfkd-{stage}-{key}" if ok else None

    return key_fn


def run_stage(stage: str, run: Callable[..., StageOutcome], cfg: RunConfig, run_root: str, parent_run_id: str | None,
              upstream: tuple[str, ...], force: bool, flow_run_id: str | None, **inputs: Any) -> dict[str, Any]:
    """Run one stage inside its own nested MLflow run; return the small record the flow passes on."""
    layout = RunLayout(Path(run_root))
    key = stage_key(cfg, stage, upstream)
    tracker = Tracker(layout, experiment_name(cfg))
    same = {"gfkd.stage": stage, "gfkd.run": cfg.run_name, "gfkd.cache_key": key}
    # params are immutable: a stage that goes on after a failed or killed attempt is a new run that names it
    resumes = None if force else tracker.resumable(same)
    logger = tracker.start_run(stage, parent_run_id, tags={
        **same, "gfkd.dataset": cfg.data.dataset, "prefect.flow_run_id": flow_run_id or "",
        **({"gfkd.resumes_run": resumes} if resumes else {})})
    try:
        out = run(cfg, layout, key, logger, force, **inputs)
    except BaseException:
        tracker.end_run(logger.run_id, "FAILED")
        raise
    if out.status == "cached":
        logger.tags({"gfkd.status": "cached", "gfkd.cached_from_run": out.manifest.mlflow_run_id or ""})
    else:
        logger.tags({"gfkd.status": "ran"})
    tracker.end_run(logger.run_id)
    m = out.manifest
    return {"stage": stage, "status": out.status, "digest": m.digest, "metrics": m.metrics,
            "mlflow_run_id": m.mlflow_run_id if out.status == "cached" else logger.run_id,
            "manifest": str(layout.manifest(stage))}
