"""Stop a process's children when it is killed outright: `python -I flows/watchdog.py PARENT_PID [TAG]`.

`gfkd run`, `benchmark`, `serve` and `ui` start servers as child processes: Prefect's temporary API,
`mlflow server` and its workers, Dask workers. A command that ends normally stops them itself; one killed with
SIGKILL (by the OOM killer, a scheduler, `kill -9`) cannot, and they would keep running, holding ports and database
files, for good. `reap_descendants_on_kill()` starts this watchdog once per process (called in-process, as by a
test or a notebook, it watches that process for the rest of its life; `GFKD_WATCHDOG=0` turns it off). It notes
the parent's descendants every POLL_S seconds; once the parent is gone (the watchdog is re-parented), it sends SIGTERM
to those of them that still run, then SIGKILL to what is left after GRACE_S. A process started less than POLL_S before the
kill, which no scan saw, is found by its environment and its start time: the parent sets TAG_VAR, which every
program it starts inherits, and a tagged process that started since the last scan is stopped too (one that started
before it and is no descendant now left on purpose: it is left alone). A child forked without exec keeps the
environment of the parent's own start, and a program started with an environment of its own carries no tag: those
are found by the scans only. While it waits for them to stop it keeps searching for tagged processes, so one started
by a process that is being stopped is stopped too. Linux only (it reads /proc); elsewhere a no-op.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 1.0
GRACE_S = 10.0
TAG_VAR = "GFKD_WATCHDOG_TAG"  # <parent pid>-<its start time>: unique while the machine runs
_watchdog: subprocess.Popen | None = None  # kept, so that it is not reported as a lost child


def reap_descendants_on_kill() -> None:
    """Start the watchdog for this process (once; later calls do nothing)."""
    global _watchdog
    if _watchdog is not None or os.environ.get("GFKD_WATCHDOG") == "0" or not Path("/proc/self/stat").is_file():
        return
    # run as a file in isolated mode (stdlib only): a `flows` package in the working directory cannot shadow it
    me = _stat(os.getpid())
    tag = f"{os.getpid()}-{me[1] if me else 0}"
    _watchdog = subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid()), tag],
                                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != TAG_VAR})
    os.environ[TAG_VAR] = tag  # the programs started from now on carry it; the watchdog carries no tag at all


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:  # bytes: a process name is cut at 15 bytes, maybe inside a UTF-8 character
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        return (int(fields[1]), int(fields[19])) if fields[0] != b"Z" else None  # fields[0] is the state
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live process below `root` (children, their children, ...)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[0], []).append((int(entry.name), st[1]))
    found, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def tagged(tag: str, since: int) -> dict[int, int]:
    """{pid: start time} of every live process started at clock tick `since` or later whose environment carries
    TAG_VAR=tag (a tagged process that started earlier and is no descendant now left the tree on purpose)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (st := _stat(int(entry.name))) is None or st[1] < since:
            continue
        try:
            carries = needle in (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or another user's
            continue
        if carries and (again := _stat(int(entry.name))) is not None and again[1] == st[1]:  # the same process
            found[int(entry.name)] = st[1]
    return found


def _ticks() -> int:
    """Now, in the clock ticks since boot of /proc/PID/stat's start times."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def _still(procs: dict[int, int]) -> dict[int, int]:
    """Those of `procs` that still run as the same process (same start time: the pid was not reused)."""
    return {pid: start for pid, start in procs.items() if (st := _stat(pid)) is not None and st[1] == start}


def _signal(procs: dict[int, int], sig: int) -> None:
    for pid in procs:
        try:
            os.kill(pid, sig)
        except OSError:  # gone meanwhile, or not ours to signal
            pass


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or not argv[0].isdigit():
        print("usage: python -I flows/watchdog.py PARENT_PID [TAG]", file=sys.stderr)
        return 2
    parent, me, tag = int(argv[0]), os.getpid(), argv[1] if len(argv) == 2 else None
    seen: dict[int, int] = {}
    since = 0  # before any scan: every tagged process, all of them started after the parent set the tag
    while os.getppid() == parent:  # re-parented once the parent is gone
        started = _ticks() - 1  # a tick of slack for the rounding of start times
        now = {pid: start for pid, start in descendants(parent).items() if pid != me}
        if os.getppid() != parent:  # it died during the scan, which then missed its re-parented children
            break
        seen, since = now, started
        time.sleep(POLL_S)
    late = tagged(tag, since) if tag else {}  # started since the last full scan, so seen by none
    left = _still(seen | late)
    _signal(left, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while (left := _still(left)) and time.monotonic() < deadline:
        time.sleep(0.2)
        # a process still stopping may start another (a server's shutdown hook, a worker being replaced): tagged,
        # it is found by the same search, stopped too, and waited for with the rest
        new = {pid: start for pid, start in (tagged(tag, since) if tag else {}).items() if pid not in left}
        _signal(new, signal.SIGTERM)
        left |= new
    _signal(left, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
