"""Manifest: what a finished stage wrote (files with sha256 and size), its cache key and headline metrics.

A stage writes its manifest last; a manifest is *valid* when it parses, carries the expected cache key and every
file it lists exists with the recorded checksum. A valid manifest means the stage is done.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gfkd.config import config_hash
from gfkd.io.atomic import sha256_file, write_json

MANIFEST_VERSION = 1


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sha256: str
    bytes: int
    volatile: bool = False  # differs between identical reruns (wall times): checked on disk, left out of the digest


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = MANIFEST_VERSION
    stage: str
    cache_key: str
    files: dict[str, FileEntry]  # path relative to the stage folder -> checksum
    metrics: dict[str, float] = {}
    info: dict[str, Any] = {}
    mlflow_run_id: str | None = None

    @property
    def digest(self) -> str:
        """What downstream stages hash: the cache key and the checksums of the files that are not volatile (not
        timestamps, wall times or run ids), so an identical rerun of this stage leaves its downstream stages cached."""
        return config_hash({"stage": self.stage, "key": self.cache_key,
                            "files": {k: v.sha256 for k, v in sorted(self.files.items()) if not v.volatile}})

    @classmethod
    def build(cls, stage: str, cache_key: str, folder: Path, files: list[str], volatile: tuple[str, ...] = (),
              **kw: Any) -> "Manifest":
        """The manifest of `files` in `folder`; those matching a glob in `volatile` are marked volatile."""
        entries = {f: FileEntry(sha256=sha256_file(folder / f), bytes=(folder / f).stat().st_size,
                                volatile=any(fnmatch.fnmatchcase(f, pat) for pat in volatile)) for f in files}
        return cls(stage=stage, cache_key=cache_key, files=entries, **kw)

    def write(self, path: Path) -> Path:
        return write_json(path, self.model_dump(mode="json"))

    def problems(self, folder: Path) -> list[str]:
        """Why the files on disk do not match this manifest (empty when they do)."""
        out = []
        for name, entry in self.files.items():
            p = folder / name
            if not p.is_file():
                out.append(f"{p} is missing")
            elif p.stat().st_size != entry.bytes or sha256_file(p) != entry.sha256:
                out.append(f"{p} does not match its checksum")
        return out


def load_manifest(path: Path) -> Manifest | None:
    """The manifest at `path`, or None if it is absent or unreadable."""
    try:
        return Manifest.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError, ValidationError):
        return None


def valid_manifest(path: Path, cache_key: str | None = None) -> Manifest | None:
    """The manifest at `path` if it is readable, matches `cache_key` (when given) and all its files check out."""
    m = load_manifest(path)
    if m is None or (cache_key is not None and m.cache_key != cache_key):
        return None
    return None if m.problems(Path(path).parent) else m
