"""Stop a process's children when it is killed outright: `python -m flows.watchdog PARENT_PID`.

`gfkd run`, `group`, `benchmark`, `serve` and `ui` start servers as child processes: Prefect's temporary API,
`mlflow server` and its workers, Dask workers. A command that ends normally stops them itself; one killed with
SIGKILL (by the OOM killer, a scheduler, `kill -9`) cannot, and they would keep running, holding ports and database
files, for good. `reap_descendants_on_kill()` starts this watchdog once per process. It notes the parent's
descendants every POLL_S seconds; once the parent is gone (the watchdog is re-parented), it sends SIGTERM to those
of them that still run, then SIGKILL to what is left after GRACE_S. A process started less than POLL_S before the
kill may be missed. Linux only (it reads /proc); elsewhere a no-op.
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
_started = False


def reap_descendants_on_kill() -> None:
    """Start the watchdog for this process (once; later calls do nothing)."""
    global _started
    if _started or not Path("/proc/self/stat").is_file():
        return
    subprocess.Popen([sys.executable, "-m", "flows.watchdog", str(os.getpid())], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _started = True


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[1]), int(fields[19])) if fields[0] != "Z" else None  # fields[0] is the state


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


def _still(procs: dict[int, int]) -> dict[int, int]:
    """Those of `procs` that still run as the same process (same start time: the pid was not reused)."""
    return {pid: start for pid, start in procs.items() if (st := _stat(pid)) is not None and st[1] == start}


def _signal(procs: dict[int, int], sig: int) -> None:
    for pid in procs:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m flows.watchdog PARENT_PID", file=sys.stderr)
        return 2
    parent, me = int(argv[0]), os.getpid()
    seen: dict[int, int] = {}
    while os.getppid() == parent:  # re-parented once the parent is gone
        seen = {pid: start for pid, start in descendants(parent).items() if pid != me}
        time.sleep(POLL_S)
    left = _still(seen)
    _signal(left, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while (left := _still(left)) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal(left, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
