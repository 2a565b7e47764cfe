"""Teacher and group save a training state every `run.checkpoint_every` epochs into their staging folder; a stage
stopped after a saved state resumes from it (not from epoch 0) with bitwise the same outputs as an uninterrupted
run. In-process: the stop is an exception raised from the logger at a chosen epoch."""

from __future__ import annotations

import shutil

import pytest
import torch

from gfkd.config import resolve_config
from gfkd.layout import RunLayout
from gfkd.stages import generate, group, teacher
from gfkd.tracking import NullLogger

BASE = ["data.dataset=TINY", "data.download=false", "teacher.epochs=12", "teacher.model.layers=3",
        "teacher.model.hidden=8", "teacher.batch_size=8", "run.checkpoint_every=4", "generate.banks=1",
        "generate.iterations=5", "distill.student.layers=2", "distill.student.hidden=8",
        "group.graph.warmup_epochs=1", "group.graph.epochs=9", "group.graph.students=2",
        "group.graph.anchor_temperature=inherit"]  # the group's state then carries learnable temperatures too


class Stop(Exception):
    pass


class StopAt(NullLogger):
    """Records the epochs it is told about and raises once `epoch` is reached (a kill between epochs)."""

    def __init__(self, epoch: int | None):
        self.epoch, self.seen = epoch, []

    def metrics(self, metrics, step=None):
        if step is not None:
            self.seen.append(step)
        if self.epoch is not None and step == self.epoch:
            raise Stop

    def child(self, name, tags=None):
        return NullLogger()


def _cfg(tmp_path, tiny_root):
    return resolve_config(None, [*BASE, f"data.root='{tiny_root}'", f"run.runs_dir='{tmp_path}'"])


def _files(out):
    return {k: v.sha256 for k, v in out.manifest.files.items() if not k.endswith(".png")}


@pytest.mark.parametrize("stop_at,resumes_after", [(6, 3), (9, 7), (2, None)])
def test_teacher_resumes_from_its_last_saved_state_bitwise(tmp_path, tiny_root, stop_at, resumes_after):
    cfg = _cfg(tmp_path, tiny_root)
    ref = teacher.run(cfg, RunLayout(tmp_path / "whole"), "k")
    layout = RunLayout(tmp_path / "stopped")
    with pytest.raises(Stop):
        teacher.run(cfg, layout, "k", StopAt(stop_at))
    state = layout.staging_dir("teacher") / teacher.TRAIN_STATE
    assert state.is_file() == (resumes_after is not None)
    if resumes_after is not None:
        assert torch.load(state, weights_only=True)["epoch"] == resumes_after
    again = StopAt(None)
    out = teacher.run(cfg, layout, "k", again)
    assert _files(out) == _files(ref)  # teacher.pt, teacher.json, history.json bitwise equal
    assert out.manifest.metrics["teacher/test/acc"] == ref.manifest.metrics["teacher/test/acc"]
    assert again.seen[:12] == list(range(12))  # restored epochs are replayed to the logger, then the rest
    assert not layout.staging_dir("teacher").exists() and not (layout.stage_dir("teacher") / teacher.TRAIN_STATE).exists()


def test_group_resumes_from_its_last_saved_state_bitwise(tmp_path, tiny_root, tiny_teacher_dir):
    cfg = _cfg(tmp_path, tiny_root)
    gen = RunLayout(tmp_path / "gen")
    generate.run(cfg, gen, "g", teacher_dir=tiny_teacher_dir)
    dirs = {"teacher_dir": tiny_teacher_dir, "generate_dir": gen.stage_dir("generate")}
    ref = group.run(cfg, RunLayout(tmp_path / "whole"), "k", **dirs)
    layout = RunLayout(tmp_path / "stopped")
    with pytest.raises(Stop):
        group.run(cfg, layout, "k", StopAt(6), **dirs)
    assert torch.load(layout.staging_dir("group") / group.TRAIN_STATE, weights_only=True)["epoch"] == 3
    out = group.run(cfg, layout, "k", **dirs)
    assert {k: v for k, v in _files(out).items() if k != "results.json"} == \
        {k: v for k, v in _files(ref).items() if k != "results.json"}
    strip = lambda m: {k: v for k, v in m.items() if "/time/" not in k}  # noqa: E731
    assert strip(out.manifest.metrics) == strip(ref.manifest.metrics)


def test_a_state_of_another_config_is_not_resumed(tmp_path, tiny_root):
    cfg = _cfg(tmp_path, tiny_root)
    layout = RunLayout(tmp_path / "run")
    with pytest.raises(Stop):
        teacher.run(cfg, layout, "old-key", StopAt(6))
    seen = StopAt(None)
    teacher.run(cfg, layout, "new-key", seen)
    assert seen.seen[0] == 0 and len(seen.seen) == 13  # from epoch 0: the old staging folder was discarded


def test_a_half_written_temporary_file_is_removed_not_read(tmp_path, tiny_root):
    cfg = _cfg(tmp_path, tiny_root)
    layout = RunLayout(tmp_path / "run")
    with pytest.raises(Stop):
        teacher.run(cfg, layout, "k", StopAt(6))
    staging = layout.staging_dir("teacher")
    (staging / "._train.pt.tmp-999").write_bytes(b"half")
    out = teacher.run(cfg, layout, "k")
    assert not any(".tmp-" in p.name for p in layout.stage_dir("teacher").iterdir())
    assert out.status == "ran"


def test_a_stage_finished_but_not_swapped_in_is_taken_as_is(tmp_path, tiny_root):
    """Killed between writing the staging folder's manifest and the swap: the rerun swaps it in, redoes nothing."""
    cfg = _cfg(tmp_path, tiny_root)
    layout = RunLayout(tmp_path / "run")
    ref = teacher.run(cfg, layout, "k")
    shutil.move(layout.stage_dir("teacher"), layout.staging_dir("teacher"))
    out = teacher.run(cfg, layout, "k", StopAt(0))  # would raise if it trained
    assert out.status == "cached" and out.manifest == ref.manifest and layout.manifest("teacher").is_file()
