"""The stage cache key: hash(stage config, upstream manifests' digests, code version of what the stage runs).

The code version hashes the gfkd source files a stage depends on (not only the task's own lines, which is all
Prefect's TASK_SOURCE sees), so editing the generator re-runs generate and later stages but not the teacher.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import gfkd
from gfkd.config import RunConfig, config_hash

_ROOT = Path(gfkd.__file__).parent
# The graph classifiers every stage loads (the OAD node students and discriminators are not among them).
_MODELS = ("models/__init__.py", "models/aggregate.py", "models/bn_stats.py", "models/classifier.py", "models/dense.py",
           "models/gcn.py", "models/gin.py")
# Hashed for every stage: config.py works out what the raw config dump in the key does not show (resolved epochs, the
# plain recipe's effective settings, resolved generator and teacher defaults).
COMMON_CODE = ("config.py",)
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "teacher": ("data", *_MODELS, "io", "train.py", "plots.py", "stages/common.py", "stages/teacher.py"),
    "generate": ("generators", *_MODELS, "io", "plots.py", "stages/common.py", "stages/generate.py",
                 "stages/teacher.py"),
    "distill": ("data", *_MODELS, "models/widened.py", "io", "losses/kd.py", "curriculum.py", "distillation.py",
                "generators",
                "augment.py", "train.py", "plots.py", "stages/common.py", "stages/distill.py", "stages/teacher.py"),
    "group": ("data", *_MODELS, "models/widened.py", "models/discriminator.py", "io", "losses", "group/graph.py",
              "group/report.py", "distillation.py", "augment.py", "plots.py", "stages/common.py", "stages/distill.py",
              "stages/group.py", "stages/teacher.py"),
    "evaluate": ("data", *_MODELS, "models/widened.py", "io", "plots.py", "report.py", "stages/common.py",
                 "stages/evaluate.py", "stages/teacher.py"),
}


def code_version(stage: str) -> str:
    """sha256 over gfkd's version and the source files `stage` depends on."""
    h = hashlib.sha256(gfkd.__version__.encode())
    for entry in (*COMMON_CODE, *STAGE_CODE[stage]):
        path = _ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def stage_key(cfg: RunConfig, stage: str, upstream_digests: tuple[str, ...] = ()) -> str:
    """The cache key of `stage` in this run."""
    return config_hash({"stage": stage, "config": cfg.stage_config(stage), "upstream": list(upstream_digests),
                        "code": code_version(stage)})
