"""Atomic file writes: write a temporary sibling, fsync, then os.replace onto the final name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a hidden temporary sibling of `path`, fsync it, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_leftovers(folder: Path) -> None:
    """Delete the hidden temporaries `write_atomic` leaves anywhere under `folder` when its process is killed between
    write and rename (never read). Only for a folder no other process is writing to."""
    for tmp in Path(folder).rglob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> Path:
    """Atomically write `obj` as indented, key-sorted JSON."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def swap_in(staging: Path, final: Path) -> None:
    """Replace folder `final` by the finished folder `staging` (the old one is removed only after the swap)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
