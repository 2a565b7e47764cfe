"""`gfkd serve`: the benchmark flow registered as a Prefect deployment on a cron schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GRID = ["teacher.epochs=3", "data.download=false", "--datasets", "TINY", "--generators", "acgkd", "--splits", "0..1"]


def _serve(tmp_path: Path, tiny_root: Path, api: str | None, *extra: str, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | ({"PREFECT_API_URL": api} if api else {})
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", *GRID, f"run.runs_dir='{tmp_path / 'runs'}'",
                             f"--data-root={tiny_root}", *extra], cwd=tmp_path, env=env, text=True,
                            start_new_session=True, **kw)


def test_serve_without_a_prefect_server_is_one_line_and_exit_2(tmp_path, tiny_root):
    proc = _serve(tmp_path, tiny_root, None, "--cron", "0 2 * * *", stderr=subprocess.PIPE)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 2 and "Traceback" not in err and "PREFECT_API_URL" in err, err


@pytest.mark.parametrize("api", ["http://127.0.0.1:9/api", None])  # the input is named first, server or none
def test_serve_rejects_a_bad_cron(tmp_path, tiny_root, api):
    proc = _serve(tmp_path, tiny_root, api, "--cron", "every night", stderr=subprocess.PIPE)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 2 and "--cron 'every night'" in err and "Traceback" not in err, err


def test_serve_with_an_unreachable_prefect_server_is_one_line_and_exit_2(tmp_path, tiny_root):
    proc = _serve(tmp_path, tiny_root, "http://127.0.0.1:9/api", "--cron", "0 2 * * *", stderr=subprocess.PIPE)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 2 and "Traceback" not in err and "Prefect API http://127.0.0.1:9/api is unreachable" in err, err
    assert "unset PREFECT_API_URL" not in err  # serve needs a lasting server: no temporary one to fall back on
    assert not (tmp_path / "runs").exists()  # the servers are checked before any folder is made


@pytest.mark.e2e
def test_serve_registers_the_deployment_and_its_schedule(tmp_path, tiny_root):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        log = open(tmp_path / "serve.log", "w")
        proc = _serve(tmp_path, tiny_root, PREFECT_API_URL.value(), "--cron", "0 2 * * *", "--out", "table.md",
                      stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            with get_client(sync_client=True) as client:
                while True:
                    assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                    try:
                        dep = client.read_deployment_by_name("gfkd-benchmark/scheduled")
                        if dep.schedules:
                            break
                    except ObjectNotFound:
                        pass
                    assert time.monotonic() < deadline, "the deployment did not appear in time"
                    time.sleep(1)
                (sched,) = dep.schedules
                assert sched.schedule.cron == "0 2 * * *" and sched.active
                spec = dep.parameters["spec"]
                assert spec["datasets"] == ["TINY"] and spec["splits"] == [0, 1] and spec["generators"] == ["acgkd"]
                assert spec["out"] == str((tmp_path / "table.md").resolve())
                assert any(o.startswith("run.runs_dir='/") for o in spec["overrides"])
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        with get_client(sync_client=True) as client:  # pause_on_shutdown=False: the schedule outlives `gfkd serve`
            assert not client.read_deployment_by_name("gfkd-benchmark/scheduled").paused


def test_serve_names_itself_when_it_refuses_a_key_its_grid_sets(tmp_path, tiny_root, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # the key is refused before the server is tried
    r = CliRunner().invoke(app, ["serve", "--cron", "0 2 * * *", *GRID, "data.dataset='MUTAG'",
                                 f"run.runs_dir='{tmp_path / 'runs'}'", f"--data-root={tiny_root}"])
    assert r.exit_code == 2 and "gfkd serve sets data.dataset per cell from --datasets" in r.output, r.output
