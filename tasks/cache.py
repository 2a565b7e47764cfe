"""The stage cache key: hash(stage config, upstream manifests' digests, code version of what the stage runs).

The code version hashes the gfkd source files a stage imports (not only the task's own lines, which is all Prefect's
TASK_SOURCE sees): gfkd/stages/<stage>.py and every gfkd module it imports, directly or through others, function-level
imports included, found by reading the sources. So editing the generator re-runs generate and later stages but not
the teacher, and no list of files can fall behind the imports.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import threading
from pathlib import Path

import gfkd
from gfkd.config import RunConfig, config_hash

_ROOT = Path(gfkd.__file__).parent
# Hashed for every stage: config.py works out what the raw config dump in the key does not show (resolved epochs, the
# plain recipe's effective settings, resolved generator and teacher defaults).
COMMON_CODE = ("config.py",)
# Imported by every stage, and not hashed: they shape messages, MLflow logging and file names, not what a stage
# computes (a renamed output is not found by the next run, which redoes the stage anyway); gfkd's version, the one
# line of __init__.py, is hashed on its own.
NOT_HASHED = ("__init__.py", "errors.py", "layout.py", "tracking.py")
# CPython 3.11's ast.parse is not safe to call from two threads at once: a threaded Dask benchmark (two cells keying
# their stages together) failed with "SystemError: AST constructor recursion depth mismatch" in the clean-clone CI.
_PARSE = threading.Lock()


def _module_file(root: Path, module: str) -> Path | None:
    """gfkd.a.b -> root/a/b.py or root/a/b/__init__.py; None for a name that is not a module (a class, a function)."""
    path = root.joinpath(*module.split(".")[1:])
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


@functools.lru_cache(maxsize=None)
def _imported_names(file: str, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    """The gfkd module names a source file imports (`module` is its own dotted name); cached per file version."""
    names = set()
    with _PARSE:
        tree = ast.parse(Path(file).read_text(), file)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "gfkd"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x import y: relative to this file's package (an __init__ is its own package)
                package = module.split(".") if file.endswith("__init__.py") else module.split(".")[:-1]
                base = ".".join([*package[:len(package) - node.level + 1], *([base] if base else [])])
            if base.split(".")[0] == "gfkd":
                names |= {base, *(f"{base}.{a.name}" for a in node.names)}
    return frozenset(names)


def _imports(root: Path, file: Path) -> set[Path]:
    """The gfkd source files `file` imports, and the package __init__ files those imports run."""
    rel = file.relative_to(root).with_suffix("")
    module = ".".join(["gfkd", *(rel.parts[:-1] if rel.name == "__init__" else rel.parts)])
    st = file.stat()
    names = _imported_names(str(file), module, st.st_mtime_ns, st.st_size)
    found = set()
    for name in names:
        parts = name.split(".")
        found |= {f for i in range(2, len(parts) + 1) if (f := _module_file(root, ".".join(parts[:i])))}
    return found


def stage_files(stage: str, root: Path | None = None) -> list[str]:
    """The source files, relative to gfkd/, that `stage`'s code version hashes (sorted)."""
    return source_files(f"stages/{stage}.py", root)


def source_files(entry: str, root: Path | None = None) -> list[str]:
    """The source files, relative to gfkd/, that code starting at `entry` (a file relative to gfkd/) hashes (sorted)."""
    root = root or _ROOT
    seen, todo = set(), [root / entry, *(root / f for f in COMMON_CODE)]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += _imports(root, f)
    return sorted(rel for rel in (str(f.relative_to(root)) for f in seen) if rel not in NOT_HASHED)


def code_version(stage: str) -> str:
    """sha256 over gfkd's version and the source files `stage` imports."""
    return source_version(f"stages/{stage}.py")


def source_version(entry: str) -> str:
    """sha256 over gfkd's version and the source files `entry` (a file relative to gfkd/) imports."""
    h = hashlib.sha256(gfkd.__version__.encode())
    for rel in source_files(entry, _ROOT):
        h.update(rel.encode())
        h.update((_ROOT / rel).read_bytes())
    return h.hexdigest()


def stage_key(cfg: RunConfig, stage: str, upstream_digests: tuple[str, ...] = ()) -> str:
    """The cache key of `stage` in this run."""
    return config_hash({"stage": stage, "config": cfg.stage_config(stage), "upstream": list(upstream_digests),
                        "code": code_version(stage)})


def node_group_key(cfg: RunConfig) -> str:
    """The key `gfkd group` keeps a finished seed's file under: the whole resolved config and the code it runs
    (gfkd/group/runner.py and its imports), so a rerun of the same command redoes only the seeds not yet written."""
    return config_hash({"command": "group", "config": cfg.model_dump(mode="json"),
                        "code": source_version("group/runner.py")})
