"""This process's resident memory, for protocol.md §7's CPU figures: the peak RSS of a stage, and its working set
(the peak minus the RSS right before the loop, which is mostly the runtime).

On Linux the peak is the kernel's high-water mark (VmHWM), which `reset_peak` sets back to the current RSS, so a stage's
peak is its own and not an earlier stage's of the same process. `StagePeak` resets it only when no other measurement of
the process is running (`gfkd benchmark` runs cells as threads of one process), so one never wipes another's; a stage
measured beside others (`alone` False), or where the reset is refused (no /proc: macOS), reads the growth of the
process's peak instead: its peak and working set then count what the other threads allocate meanwhile (high), and miss
what fits under a peak they had already raised (low)."""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path

_PROC = Path("/proc/self")
_lock = threading.Lock()
_active = 0  # StagePeak measurements running in this process


def _lifetime_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    """The resident set size now."""
    try:
        return int((_PROC / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _lifetime_peak()


def peak_rss_bytes() -> int:
    """The peak resident set size since the last `reset_peak` (or the process's start)."""
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _lifetime_peak()


def reset_peak() -> bool:
    """Set the peak back to the RSS now (Linux ≥ 4.0: `5` to /proc/self/clear_refs); False where that is refused."""
    try:
        (_PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


class StagePeak:
    """`with StagePeak() as mem: ...; peak, working_set = mem.read()`: a stage's peak RSS and working set (bytes)."""

    def __enter__(self) -> "StagePeak":
        global _active
        with _lock:
            _active += 1
            self.alone = _active == 1 and reset_peak()
        self.before = rss_bytes() if self.alone else peak_rss_bytes()
        return self

    def read(self) -> tuple[int, int]:
        peak = peak_rss_bytes()
        return peak, max(0, peak - self.before)

    def __exit__(self, *exc: object) -> None:
        global _active
        with _lock:
            _active -= 1
