"""Helpers for generator tests (the tiny trained teachers are fixtures in tests/conftest.py)."""

import torch

from gfkd.config import resolve_config
from gfkd.generators.base import GenContext
from gfkd.stages import teacher


def make_ctx(teacher_dir, *overrides):
    model, meta, bn = teacher.load_teacher(teacher_dir / "teacher.pt")
    cfg = resolve_config(None, list(overrides))
    return GenContext(model, meta["data"], bn, cfg.generate, torch.device("cpu"))
