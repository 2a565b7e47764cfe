"""Run a command for as long as a parent process lives: `python -m flows.watchdog PARENT_PID -- CMD...`.

`tracking_server` starts `mlflow server` through this, as the leader of a new process group. A parent that exits
normally stops the group itself; a parent killed with SIGKILL cannot, and the server (with its workers) would keep
its port and its SQLite file open. The watchdog notices that its parent is gone (it is re-parented) and stops the
whole group: SIGTERM, then SIGKILL after a grace period. It exits with the command's exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 10.0


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM this process group (the command and its workers); SIGKILL it if the command outlives GRACE_S."""
    os.killpg(0, signal.SIGTERM)
    try:
        child.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m flows.watchdog PARENT_PID -- CMD...", file=sys.stderr)
        return 2
    parent = int(argv[0])
    # A SIGTERM to the group (how the parent stops it) reaches the command too: wait for it to finish, so that the
    # parent's wait on this process covers the command's shutdown.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # a handler, not SIG_IGN: the command gets the default
    child = subprocess.Popen(argv[2:])  # same process group as this watchdog
    while child.poll() is None:
        if os.getppid() != parent:  # the parent died: this process was re-parented
            _stop_group(child)
        time.sleep(POLL_S)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
