"""What every stage shares: the cached-or-run decision, the staging folder and the swap-in, the outcome record."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from gfkd.config import RunSection
from gfkd.errors import ConfigError, StageError
from gfkd.io.atomic import remove_leftovers, swap_in
from gfkd.io.manifest import Manifest, load_manifest, valid_manifest
from gfkd.layout import MANIFEST, RunLayout


@dataclass(frozen=True)
class StageOutcome:
    manifest: Manifest
    status: str  # "ran" | "cached"


def cached(layout: RunLayout, stage: str, cache_key: str, force: bool) -> StageOutcome | None:
    """The finished stage's outcome when its manifest is valid for `cache_key` (and not forced), else None.

    A stage finished in its staging folder by a run killed before the swap is swapped in now. A manifest that does
    not parse, or whose files do not match it, is not overwritten silently: StageError, fixed by `--force STAGE`.
    """
    if force:
        return None
    path = layout.manifest(stage)
    if (m := valid_manifest(path, cache_key)) is not None:
        return StageOutcome(m, "cached")
    if path.is_file():
        found = load_manifest(path)
        if found is None:
            raise StageError(f"{stage}: manifest {path} is corrupt (not a gfkd manifest): redo the stage with "
                             f"gfkd run --force {stage}")
        if found.cache_key == cache_key:
            raise StageError(f"{stage}: {found.problems(path.parent)[0]} (listed in {path}): the finished stage "
                             f"was modified, redo it with gfkd run --force {stage}")
    staged = layout.staging_dir(stage) / MANIFEST
    if (m := valid_manifest(staged, cache_key)) is not None:  # killed between writing the manifest and the swap
        _swap(layout.staging_dir(stage), layout.stage_dir(stage))
        return StageOutcome(m, "cached")
    return None


def fresh_staging(layout: RunLayout, stage: str) -> Path:
    """An empty folder to write the stage's outputs into (a leftover from a killed run is discarded)."""
    staging = layout.staging_dir(stage)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def save_figure(fig, path: Path, logger, folder: str, dpi: int = 110) -> None:
    """Write `fig` to the staged file `path` and log that file to MLflow under `folder` (the stage's name): MLflow
    shows the run folder's bytes, not a second rendering."""
    fig.savefig(path, dpi=dpi)
    logger.artifact(path, folder)


def publish(layout: RunLayout, stage: str, staging: Path, manifest: Manifest) -> StageOutcome:
    """Write the manifest last, then swap the staging folder in whole as the stage's folder."""
    manifest.write(staging / MANIFEST)
    _swap(staging, layout.stage_dir(stage))
    return StageOutcome(manifest, "ran")


def _swap(staging: Path, final: Path) -> None:
    """Swap the finished staging folder in, then drop its `.cache_key`: kept until the manifest is written, so a kill
    before that resumes the finished work instead of wiping it (resumable_staging)."""
    swap_in(staging, final)
    (final / ".cache_key").unlink(missing_ok=True)


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu; ConfigError for `cuda` on a machine without a visible CUDA device."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device=cuda but no CUDA device is visible: use run.device=cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare_runtime(run: RunSection, flush_denormal: bool = False) -> torch.device:
    """Set torch's thread count and deterministic kernels from `run` (process-wide) and the calling thread's denormal
    flushing, then resolve its device.

    Without deterministic kernels a CPU stage with two threads gave different floats on every rerun (a MUTAG teacher's
    best epoch 178 or 179); with them, reruns repeat bit for bit at a given thread count, and one thread gives the same
    bits either way (docs/pipeline.md).

    `flush_denormal` (CPU only) is set either way, never inherited: generation turns it on (acgkd.md §7) and the switch
    outlives the stage, so a distill stage used to run with it after a generate stage in the same process and without
    it when resumed in a new one, with different students (docs/pipeline.md, "Denormals")."""
    if run.threads != "auto":
        torch.set_num_threads(int(run.threads))
    if run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
    torch.use_deterministic_algorithms(run.deterministic, warn_only=True)  # warn, not fail, where no such kernel exists
    device = resolve_device(run.device)
    if device.type == "cpu":
        torch.set_flush_denormal(flush_denormal)
    return device


def flush_denormal_enabled() -> bool:
    """Whether CPU float arithmetic flushes denormals to zero now (torch has a setter, no getter)."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


def resumable_staging(layout: RunLayout, stage: str, cache_key: str, fresh: bool = False) -> Path:
    """The staging folder, kept across a killed run with the same cache key (so finished shards survive), else new;
    `fresh` (`--force STAGE`: redo it) discards it either way, damaged files of the killed run included."""
    staging = layout.staging_dir(stage)
    keyfile = staging / ".cache_key"
    if staging.exists() and (fresh or not keyfile.is_file() or keyfile.read_text() != cache_key):
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    remove_leftovers(staging)  # half-written files of a killed run
    keyfile.write_text(cache_key)
    return staging
