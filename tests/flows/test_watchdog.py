"""`flows.watchdog`: the servers a command started stop when the command is killed with SIGKILL."""

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
    from flows.watchdog import _stat

    return _stat(pid) is None


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
            if str(folder) in _cmdline(int(proc.name)):
                group = os.getpgid(int(proc.name))
                os.killpg(group, signal.SIGKILL) if group != os.getpgrp() else os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            pass


def _kill_all(pids) -> None:
    """SIGKILL what a failed run of a test would leave behind."""
    for pid in pids:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def _parent(tmp_path: Path, body: str) -> subprocess.Popen:
    """A Python process running `body`, in its own session so that killing it leaves this test alone."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(body)], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, text=True)


def test_the_descendants_stop_when_the_parent_is_killed(tmp_path):
    """A child in its own session (as the servers are started) and a grandchild both stop; nothing else does."""
    pids = tmp_path / "pids"
    grandchild = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
    parent = _parent(tmp_path, f"""
        import subprocess, sys, time
        from flows.watchdog import reap_descendants_on_kill
        reap_descendants_on_kill()
        reap_descendants_on_kill()  # once per process
        out = open({str(pids)!r}, "w")
        subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                          "subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(600)"],
                         start_new_session=True, stdout=out)
        subprocess.Popen([sys.executable, "-c", {grandchild!r}], stdout=out)
        time.sleep(600)
    """)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    below: dict[int, int] = {}
    try:
        assert _wait_for(lambda: pids.is_file() and len(pids.read_text().split()) == 2, 60), "no children"
        time.sleep(2)  # the watchdog notes the parent's descendants every second
        from flows.watchdog import descendants

        below = descendants(parent.pid)
        watchdogs = [p for p in below if "flows/watchdog.py" in _cmdline(p)]
        assert len(watchdogs) == 1 and len(below) == 4, below  # the watchdog, 2 children, 1 grandchild
        os.kill(parent.pid, signal.SIGKILL)
        assert _wait_for(lambda: all(_gone(p) for p in below), 20), "a descendant outlived its parent"
        assert bystander.poll() is None  # not a descendant: left alone
    finally:
        bystander.kill()
        parent.kill()
        parent.wait()
        _kill_all(below)


def test_a_child_started_just_before_the_kill_stops_too(tmp_path):
    """The scans run every POLL_S: a server started in the last second before a SIGKILL was seen by none of them and
    kept running. It carries the parent's tag in its environment, and is found by it."""
    parent = _parent(tmp_path, """
        import os, signal, subprocess, sys, time
        from flows.watchdog import reap_descendants_on_kill
        reap_descendants_on_kill()
        time.sleep(1.5)  # the watchdog runs and scans, as it would in a long command
        child = subprocess.Popen([sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(600)"],
                                 start_new_session=True, stdout=subprocess.PIPE, text=True)
        print(child.stdout.readline().strip(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # a few ms after the child started: no scan in between, as a rule
    """)
    child = 0
    try:
        child = int(parent.stdout.readline().strip())
        parent.wait(timeout=60)
        assert _wait_for(lambda: _gone(child), 20), "the late child outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        _kill_all([child] if child else [])


def test_a_process_started_by_a_child_while_it_is_being_stopped_stops_too(tmp_path):
    """The child answers SIGTERM by starting another program (as a server's shutdown hook might), after the watchdog's
    search for late tagged processes: the watchdog keeps searching while it waits, and stops that one too."""
    pids = tmp_path / "pids"
    on_term = (f"import signal, subprocess, sys, time\n"
               f"def term(*_):\n"
               f"    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
               f"    open({str(pids)!r}, 'a').write(str(p.pid) + chr(10))\n"
               f"signal.signal(signal.SIGTERM, term)\n"
               f"open({str(pids)!r}, 'a').write('ready' + chr(10))\n"
               f"while True: time.sleep(0.1)\n")
    parent = _parent(tmp_path, f"""
        import subprocess, sys, time
        from flows.watchdog import reap_descendants_on_kill
        reap_descendants_on_kill()
        subprocess.Popen([sys.executable, "-c", {on_term!r}], start_new_session=True)
        time.sleep(600)
    """)
    late = 0
    try:
        assert _wait_for(lambda: pids.is_file() and "ready" in pids.read_text(), 60), "no child"
        time.sleep(2)  # seen by a scan
        os.kill(parent.pid, signal.SIGKILL)
        assert _wait_for(lambda: len(pids.read_text().split()) == 2, 20), "the child was not told to stop"
        late = int(pids.read_text().split()[1])
        assert _wait_for(lambda: _gone(late), 20), "the process started while stopping outlived the parent"
    finally:
        parent.kill()
        parent.wait()
        _kill_all([late] if late else [])
        _kill_any_running_in(tmp_path)


def test_a_tagged_process_that_left_the_tree_before_the_last_scan_is_left_alone(tmp_path):
    """Found in review: the tag alone also matched a program the command had detached on purpose (a shell's
    `sleep &` after the shell exits); only tagged processes started since the last scan are stopped."""
    parent = _parent(tmp_path, """
        import os, signal, subprocess, sys, time
        from flows.watchdog import reap_descendants_on_kill
        reap_descendants_on_kill()
        detached = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
        child = subprocess.Popen(["sleep", "300"])
        print(detached.stdout.strip(), child.pid, flush=True)
        time.sleep(2.5)  # the watchdog scans: the child is a descendant, the detached sleep is not
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    pids: list[int] = []
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        detached, child = pids
        parent.wait(timeout=60)
        assert _wait_for(lambda: _gone(child), 20), "the attached child outlived its parent"
        time.sleep(1)
        assert not _gone(detached), "the watchdog stopped a process that had left the tree before the last scan"
    finally:
        parent.kill()
        parent.wait()
        _kill_all(pids)


def test_a_parent_that_dies_during_a_scan_keeps_the_last_full_list(monkeypatch):
    """Found in review: the scan that ran while the parent died found its children already re-parented, replaced the
    list with an empty one, and nothing was stopped."""
    from flows import watchdog

    alive = iter([True, True, True, False])  # dies during the second scan
    scans = iter([{101: 7, 102: 8}, {}])
    sent = []
    monkeypatch.setattr(watchdog.os, "getppid", lambda: 42 if next(alive) else 1)
    monkeypatch.setattr(watchdog, "descendants", lambda root: next(scans))
    monkeypatch.setattr(watchdog, "_still", lambda procs: dict(procs))
    monkeypatch.setattr(watchdog, "_signal", lambda procs, sig: sent.append((sorted(procs), sig)))
    monkeypatch.setattr(watchdog.time, "sleep", lambda s: None)
    monkeypatch.setattr(watchdog, "GRACE_S", 0.0)
    assert watchdog.main(["42"]) == 0
    assert sent[0] == ([101, 102], signal.SIGTERM) and sent[-1] == ([101, 102], signal.SIGKILL)


def test_a_process_name_that_is_not_utf8_is_read(tmp_path):
    """Found in review: the kernel cuts names at 15 bytes, maybe inside a character; reading them as text crashed
    the watchdog, silently."""
    from flows.watchdog import descendants

    code = ("import ctypes, time; ctypes.CDLL(None).prctl(15, b'gfkd\\xe4\\xb8', 0, 0, 0); print('named', flush=True); "
            "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "named"
        assert Path(f"/proc/{child.pid}/comm").read_bytes().startswith(b"gfkd\xe4")
        assert child.pid in descendants(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_gfkd_watchdog_0_turns_it_off(tmp_path):
    code = ("import os; os.environ['GFKD_WATCHDOG'] = '0'; from flows import watchdog; "
            "watchdog.reap_descendants_on_kill(); print(watchdog._watchdog)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr


def test_descendants_reads_the_process_tree_and_the_usage_is_checked(tmp_path):
    from flows.watchdog import descendants

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        found = descendants(os.getpid())
        assert child.pid in found and os.getpid() not in found and 1 not in found
    finally:
        child.kill()
        child.wait()
    bad = subprocess.run([sys.executable, "-m", "flows.watchdog", "x"], capture_output=True, text=True, timeout=60)
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


@pytest.mark.e2e
def test_prefects_server_stops_when_gfkd_run_is_killed(tmp_path, tiny_root):
    """SIGKILL to `gfkd run` (the OOM killer, a scheduler) used to leave Prefect's temporary API server running."""
    from flows.watchdog import descendants

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    run = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", f"--data-root={tiny_root}", "data.dataset=TINY",
                            "data.download=false", "teacher.epochs=500", f"run.runs_dir='{tmp_path / 'runs'}'"],
                           cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

    def prefect_server() -> dict[int, int]:
        below = descendants(run.pid)
        return below if any(_cmdline(p).find("prefect.server.api.server") >= 0 for p in below) else {}

    below: dict[int, int] = {}
    try:
        assert _wait_for(prefect_server, 240), "Prefect's server did not start"
        time.sleep(2)  # the watchdog notes the descendants every second: one started just now may be missed
        below = prefect_server()
        os.kill(run.pid, signal.SIGKILL)  # the command alone, not its process group
        assert _wait_for(lambda: all(_gone(p) for p in below), 30), \
            [_cmdline(p)[:120] for p in below if not _gone(p)]
    finally:
        run.kill()
        run.wait()
        _kill_all(below)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
