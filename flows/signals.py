"""`gfkd run`'s and `gfkd benchmark`'s exit at once on Ctrl-C or SIGTERM, kept in force inside their flows.

Ctrl-C or SIGTERM (`timeout`, a scheduler's or `docker stop`'s stop) reaches the whole process group, Prefect's
temporary server included, and Prefect would spend a minute or more retrying to report the crash to it, in
tracebacks. Exiting at once loses nothing: every file is written under a temporary name and renamed, and a stage's
manifest comes last (the watchdog stops the servers this process started). Prefect's flow engine installs its own
SIGTERM handler for the flow's duration (its bridge for a runner's cancel), so each flow calls `keep_in_flow` first
(the pipeline, and the benchmark and its grid; a pipeline inside a benchmark runs in a worker thread, where no
handler can be set and the main thread's holds); where no CLI handler is set (a deployment served by `gfkd serve`),
Prefect's stays.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from flows.env import remove_scratch

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_handler = None  # the CLI's, while `exit_on_signals` is active


@contextmanager
def exit_on_signals(run_root: Path, forced: tuple[str, ...] = (), kept: str | None = None,
                    scratch: Path | None = None, shared_scratch: Path | None = None) -> Iterator[None]:
    """One line naming `run_root` and exit 130 (Ctrl-C) or 143 (SIGTERM) at once, while the block runs. `forced`:
    the run's `--force` stages, which the same command would start over instead of resuming; `kept`: what the line
    says is kept (default: the finished stages and shards in `run_root`); `scratch`: the command's temporary folder,
    removed before the exit (which skips `scratch_tmp`'s own removal), then `shared_scratch` if empty
    (`flows.env.remove_scratch`)."""
    global _handler
    again = ("run the same command again to resume" if not forced else
             f"run it again without --force to resume ({', '.join(forced)} would start over with it)")
    kept = kept or f"the finished stages and shards in {run_root}"

    def stop(signum: int, frame: FrameType | None) -> None:
        for sig in SIGNALS:  # a second Ctrl-C while this one cleans up: one line, one exit
            signal.signal(sig, signal.SIG_IGN)
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        sys.stderr.write(f"\ngfkd: {what}: {kept} are kept; {again}\n")
        sys.stderr.flush()
        if scratch is not None:
            remove_scratch(scratch, shared_scratch)
        os._exit(128 + signum)

    before = {sig: signal.signal(sig, stop) for sig in SIGNALS}
    _handler = stop
    try:
        yield
    finally:
        _handler = None
        for sig, handler in before.items():
            signal.signal(sig, handler)


def keep_in_flow() -> None:
    """Put the CLI's handlers back over the ones Prefect's flow engine has just installed (a no-op elsewhere)."""
    if _handler is not None and threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _handler)
