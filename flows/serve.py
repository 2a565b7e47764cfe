"""Servers for fanned-out and scheduled benchmarks: an MLflow tracking server, a Prefect API, the deployment.

- `tracking_server(folder)`: `MLFLOW_TRACKING_URI` when set; else an `mlflow server` on 127.0.0.1 with its SQLite
  backend and artifacts in `folder`, for as long as the block runs, so many workers log over HTTP instead of
  writing one SQLite file.
- `prefect_api()`: `PREFECT_API_URL` when set; else Prefect's ephemeral API started in this process and named in
  the settings, so Dask worker processes report to the same API instead of each starting their own.
- `serve_benchmark(spec, cron)`: the benchmark flow as a deployment on a cron schedule (needs a Prefect server).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flows.watchdog import reap_descendants_on_kill
from gfkd.errors import GfkdError
from gfkd.tracking import server_env

DEPLOYMENT = "scheduled"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-600:] if log.is_file() else ""
                raise GfkdError(f"the MLflow server did not start (see {log}): {tail.strip()[-300:]}") from None
            time.sleep(0.5)


@contextmanager
def tracking_server(folder: Path, timeout_s: float = 180) -> Iterator[str]:
    """Yield a tracking URI that many processes may log to; start (and finally stop) `mlflow server` if needed."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout's last line is the folder
    if os.environ.get("MLFLOW_TRACKING_URI"):
        yield os.environ["MLFLOW_TRACKING_URI"]
        return
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "mlflow-server.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
           f"sqlite:///{(folder / 'mlflow.db').resolve()}", "--artifacts-destination",
           (folder / "mlartifacts").resolve().as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    reap_descendants_on_kill()  # the server stops even when this process is killed with SIGKILL
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, cwd=folder, env=server_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", proc, log, timeout_s)
        os.environ["MLFLOW_TRACKING_URI"] = url
        yield url
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield a Prefect API URL that other processes can reach: $PREFECT_API_URL, or this process's ephemeral API."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    from prefect.server.api.server import SubprocessASGIServer  # what Prefect itself starts in ephemeral mode

    reap_descendants_on_kill()
    server = SubprocessASGIServer()
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield server.api_url


def check_cron(cron: str) -> None:
    """A GfkdError naming `--cron` when it is not a cron expression."""
    from prefect.client.schemas.schedules import construct_schedule

    try:
        construct_schedule(cron=cron)
    except ValueError as exc:
        raise GfkdError(f"--cron '{cron}' is not a cron expression: write e.g. \"0 2 * * *\"") from exc


def serve_benchmark(spec, cron: str) -> None:
    """Register the benchmark flow as deployment `gfkd-benchmark/scheduled` on `cron` and run its schedule (blocks)."""
    from prefect.settings import PREFECT_API_URL

    from flows.benchmark import benchmark

    if not PREFECT_API_URL.value():
        raise GfkdError("gfkd serve needs a running Prefect server: run `prefect server start` and set "
                        "PREFECT_API_URL=http://127.0.0.1:4200/api")
    check_cron(cron)
    print(f"serving deployment gfkd-benchmark/{DEPLOYMENT} on '{cron}' at {PREFECT_API_URL.value()} "
          f"(Ctrl-C to stop; the schedule stays active)", file=sys.stderr)
    benchmark.serve(name=DEPLOYMENT, cron=cron, parameters={"spec": json.loads(spec.model_dump_json())},
                    pause_on_shutdown=False, print_starting_message=False)
