"""`flows.watchdog`: the tracking server stops when the process that started it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest


def _gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie counts: it holds no port, no file, no CPU)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _kill_any_running_in(folder: Path) -> None:
    """SIGKILL the process group of every process whose command line names `folder` (not this test's group)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                group = os.getpgid(int(proc.name))
                os.killpg(group, signal.SIGKILL) if group != os.getpgrp() else os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _parent(tmp_path: Path, body: str) -> subprocess.Popen:
    """A Python process running `body`, in its own session so that killing it leaves this test alone."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(body)], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, text=True)


def test_the_command_stops_when_the_parent_is_killed(tmp_path):
    pidfile = tmp_path / "child.pid"
    parent = _parent(tmp_path, f"""
        import os, subprocess, sys, time
        cmd = [sys.executable, "-c", "import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(600)"]
        subprocess.Popen([sys.executable, "-m", "flows.watchdog", str(os.getpid()), "--", *cmd], start_new_session=True)
        time.sleep(600)
    """)
    try:
        assert _wait_for(lambda: pidfile.is_file() and pidfile.read_text(), 60), "the command did not start"
        child = int(pidfile.read_text())
        assert not _gone(child)
        os.kill(parent.pid, signal.SIGKILL)
        assert _wait_for(lambda: _gone(child), 15), "the command outlived its parent"
    finally:
        parent.kill()
        parent.wait()


def test_the_command_runs_while_the_parent_lives_and_its_exit_code_is_kept(tmp_path):
    r = subprocess.run([sys.executable, "-m", "flows.watchdog", str(os.getpid()), "--", sys.executable, "-c",
                        "import sys, time; time.sleep(1.5); sys.exit(7)"], timeout=60)
    assert r.returncode == 7  # ran to its end (three polls) and kept its exit code
    bad = subprocess.run([sys.executable, "-m", "flows.watchdog", "sleep", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.e2e
def test_a_tracking_server_stops_when_the_benchmark_is_killed(tmp_path):
    """Found by exploring the CLI: SIGKILL to `gfkd benchmark` left `mlflow server` running, port and SQLite held."""
    urlfile = tmp_path / "url"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from flows.serve import tracking_server
        with tracking_server(Path({str(tmp_path / 'server')!r})) as url:
            Path({str(urlfile)!r}).write_text(url)
            time.sleep(600)
    """)], cwd=tmp_path, env=env, start_new_session=True)

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{urlfile.read_text()}/health", timeout=2).status == 200
        except OSError:
            return False

    try:
        assert _wait_for(lambda: urlfile.is_file() and urlfile.read_text(), 240), "the server did not start"
        assert healthy()
        os.kill(parent.pid, signal.SIGKILL)
        assert _wait_for(lambda: not healthy(), 30), "the MLflow server outlived the process that started it"
    finally:
        parent.kill()
        parent.wait()
        _kill_any_running_in(tmp_path)  # what a failed run of this test would leave behind
