"""gfkd/stages/chunks.py: how the generate stage starts its worker processes."""

import os
import signal
import threading
import time
from concurrent.futures import Future

import pytest

from gfkd.stages.chunks import run_jobs


class _SpawningPool:
    """A stand-in for the ProcessPoolExecutor: each `submit` is a worker's creation, a Ctrl-C (process-wide, as a
    terminal or `kill -TERM -PGID` sends it), then half a second of Python bytecode before the worker has its start-up data."""

    def __init__(self, events: list[str], sig: int) -> None:
        self.events, self.sig = events, sig

    def submit(self, fn, job):
        self.events.append(f"created {job}")
        os.kill(os.getpid(), self.sig)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # where Python would run a pending handler
            pass
        self.events.append(f"data sent {job}")
        fut: Future = Future()
        fut.set_result((0, job, 0.0, [], 0))
        return fut


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_while_the_workers_are_created_reaches_the_handler_once_all_have_their_data(sig):
    """Ctrl-C or SIGTERM (a scheduler's stop, `timeout`): the handler (the CLI's exits the process at once) must not run between a worker's creation and the write of
    its start-up data, even when another thread, which does not block the signal, takes it; it runs once, after."""
    events: list[str] = []
    other = threading.Event()
    taker = threading.Thread(target=other.wait, daemon=True)  # a thread the kernel may hand the signal to
    taker.start()
    before = signal.signal(sig, lambda signum, frame: events.append("handler"))
    try:
        results = list(run_jobs(_SpawningPool(events, sig), [1, 2]))
    finally:
        signal.signal(sig, before)
        other.set()
    assert events == ["created 1", "data sent 1", "created 2", "data sent 2", "handler"]
    assert sorted(r[1] for r in results) == [1, 2]
    assert sig not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # the mask is given back
