"""The environment that keeps Prefect and MLflow inside one folder and quiet (no telemetry, no analytics)."""

from __future__ import annotations

from pathlib import Path


def local_env(prefect_home: Path, result_storage: Path) -> dict[str, str]:
    """Prefect's home (and its database) and result storage in the given folders; telemetry and analytics off."""
    return {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(result_storage),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
