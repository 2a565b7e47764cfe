"""This process's resident memory, for protocol.md §7's CPU figures: the peak RSS of a stage, and its working set
(the peak minus the RSS right before the loop, which is mostly the runtime).

On Linux the peak is the kernel's high-water mark (VmHWM), which `reset_peak` sets back to the current RSS, so a stage's
peak is its own and not an earlier stage's of the same process. Without /proc (macOS), the peak is the process's
lifetime maximum and the RSS before the loop is that maximum too: the working set can then read low, never high."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

_PROC = Path("/proc/self")


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
