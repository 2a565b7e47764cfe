"""Checkpoints: a `.pt` file of tensors only (state_dict + named tensor groups) and a `.json` of primitives.

Loaded with `torch.load(weights_only=True)`: no pickled modules, nothing executes on load.

    save_checkpoint(path, model.state_dict(), {"model": model.config()}, tensors={"bn_eval_stats": stats})
    state, meta, tensors = load_checkpoint(path)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from gfkd.errors import CheckpointError
from gfkd.io.atomic import write_atomic, write_json

CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any],
                    tensors: dict[str, dict[str, torch.Tensor]] | None = None) -> tuple[Path, Path]:
    """Write `path` (.pt: {"state_dict", **tensors}) and its `.json` sibling (meta + version), atomically."""
    path = Path(path)
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}
    for group, items in (tensors or {}).items():
        payload[group] = {k: v.detach().cpu() for k, v in items.items()}
    write_atomic(path, lambda tmp: torch.save(payload, tmp))
    meta_path = write_json(path.with_suffix(".json"), {"version": CHECKPOINT_VERSION, **meta})
    return path, meta_path


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, dict]]:
    """Read a checkpoint written by `save_checkpoint` with weights_only=True.

    Returns:
        (state_dict, meta, other tensor groups)
    Raises:
        CheckpointError: naming the file when it is missing, truncated or of another version.
    """
    path = Path(path)
    meta_path = path.with_suffix(".json")
    for p in (path, meta_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} not found: rerun the stage that writes it (gfkd run --force teacher)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(meta_path.read_text())
    except Exception as exc:  # truncated zip, bad JSON, non-tensor pickle content
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}): rerun the stage that wrote it") from exc
    if meta.get("version") != CHECKPOINT_VERSION or "state_dict" not in payload:
        raise CheckpointError(f"checkpoint {path} has version {meta.get('version')}, expected {CHECKPOINT_VERSION}: "
                              f"retrain it with this gfkd version")
    state = payload.pop("state_dict")
    return state, meta, payload


def save_training_state(path: Path, state: dict[str, Any]) -> Path:
    """Atomically save a resumable training state (tensors, numbers, strings, None, lists and dicts only)."""
    return write_atomic(Path(path), lambda tmp: torch.save(state, tmp))


def load_training_state(path: Path, what: str = "training checkpoint",
                        fix: str = "delete it to restart the stage from its first epoch") -> dict[str, Any]:
    """Read a state written by `save_training_state` (or another torch.save of tensors) with weights_only=True.

    Raises:
        CheckpointError: naming the file (as `what`) when it is unreadable, and `fix`.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{what} {path} is unreadable ({type(exc).__name__}): {fix}") from exc
