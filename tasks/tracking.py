"""Prefect tasks that open and close the pipeline's parent MLflow run."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.runtime import flow_run

from gfkd.config import RunConfig
from gfkd.layout import RunLayout
from gfkd.tracking import Tracker
from gfkd.versions import versions_line
from tasks.stage import experiment_name


@task(name="open-tracking", cache_policy=None, persist_result=False)
def open_pipeline_run(cfg: RunConfig, run_root: str) -> str:
    """Create the parent MLflow run of this pipeline run; log the resolved config; return its id."""
    layout = RunLayout(Path(run_root))
    tracker = Tracker(layout, experiment_name(cfg))
    tracker.end_orphans()  # a killed earlier command's runs would show RUNNING in the UI for ever
    logger = tracker.start_run(cfg.run_name, tags={
        "gfkd.dataset": cfg.data.dataset, "gfkd.run": cfg.run_name, "gfkd.protocol": cfg.protocol.name,
        "prefect.flow_run_id": flow_run.get_id() or "", "prefect.flow_run_name": flow_run.get_name() or "",
        "gfkd.versions": versions_line()})
    logger.params(cfg.model_dump(mode="json"))
    if layout.config.is_file():
        logger.artifact(layout.config)
    return logger.run_id


@task(name="close-tracking", cache_policy=None, persist_result=False)
def close_pipeline_run(cfg: RunConfig, run_root: str, run_id: str, records: list[dict]) -> None:
    """Log each stage's status and headline metrics on the parent run and end it."""
    tracker = Tracker(RunLayout(Path(run_root)), experiment_name(cfg))
    logger = tracker.logger(run_id)
    metrics = {}
    for r in records:
        metrics |= r.get("metrics") or {}
    logger.metrics(metrics)
    logger.tags({f"gfkd.status.{r['stage']}": r["status"] for r in records})
    logger.flush()
    failed = any(r["status"] == "failed" for r in records)
    tracker.end_run(run_id, "FAILED" if failed else "FINISHED")
