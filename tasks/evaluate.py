"""Prefect task of the evaluate stage; publishes the report and the table as Prefect artifacts too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from gfkd.config import RunConfig
from gfkd.stages import evaluate
from tasks.stage import prefect_cache_key, run_stage


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def artifact_markdown(report: str, folder: Path) -> str:
    """The report as Prefect's UI shows it: that page cannot load the report's images (links relative to its
    folder), so each becomes a line with the figure's path, instead of a broken image."""
    return _IMAGE.sub(lambda m: f"*Figure {m.group(1)}: `{(folder / m.group(2)).resolve()}` (also in the evaluate "
                                f"stage's MLflow artifacts)*", report)


@task(name="evaluate", cache_key_fn=prefect_cache_key("evaluate"), persist_result=True, cache_result_in_memory=False)
def evaluate_task(cfg: RunConfig, run_root: str, parent_run_id: str | None = None, upstream: tuple[str, ...] = (),
                  force: bool = False, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """Score every model of the run on the real held-out graphs; write the table and the report."""
    dirs = {stage: str(Path(path).parent) for stage, path in (inputs or {}).items()}
    rec = run_stage("evaluate", evaluate.run, cfg, run_root, parent_run_id, upstream, force, flow_run.get_id(),
                    stage_dirs=dirs)
    out = Path(rec["manifest"]).parent
    key = "".join(c if c.isalnum() else "-" for c in cfg.run_name.lower())
    create_markdown_artifact(artifact_markdown((out / "report.md").read_text(), out), key=f"report-{key}",
                             description="gfkd report")
    rows = json.loads((out / "results.json").read_text())["rows"]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    create_table_artifact([{"row": r["name"], "test_acc": r["mean"], "std": r["std"], "n": len(r["accs"]),
                            "val_selected": mean(r["val_selected"]), "seed_agreement": r["agreement"],
                            "collapsed": r["collapsed"], "params": r["params"], "wall_s": r["wall_s"]} for r in rows],
                          key=f"table-{key}")
    return rec
