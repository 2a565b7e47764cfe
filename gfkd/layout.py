"""RunLayout: every path of a run, derived from the run root and the stage name.

    runs/<run>/config.json          resolved config
    runs/<run>/summary.json         per-stage status, wall time, headline metrics, MLflow run ids
    runs/<run>/mlflow.db            MLflow's SQLite backend (unless MLFLOW_TRACKING_URI is set)
    runs/<run>/mlartifacts/         MLflow artifacts
    runs/<run>/.tmp/                TMPDIR while a command runs (PyG's compiled templates, Dask scratch)
    runs/<run>/prefect/             Prefect home, its database and result storage (unless PREFECT_API_URL is set)
    runs/<run>/<stage>/             a stage's outputs, manifest.json last
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"  # a stage's manifest, in its folder (written last) or its staging folder


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def prefect_storage(self) -> Path:
        return self.prefect_home / "storage"

    @property
    def scratch(self) -> Path:
        """The temporary files of a command on this run (TMPDIR while it runs), removed when it ends."""
        return self.root / ".tmp"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def manifest(self, stage: str) -> Path:
        return self.stage_dir(stage) / MANIFEST

    def staging_dir(self, stage: str) -> Path:
        """Where a stage writes before its folder is swapped in whole."""
        return self.root / f".{stage}.partial"
