import json

import pytest
import torch

from gfkd.config import resolve_config
from gfkd.io.manifest import valid_manifest
from gfkd.layout import RunLayout
from gfkd.stages import teacher
from tasks.cache import stage_key

TINY = ["data.dataset=TINY", "teacher.epochs=4", "teacher.model.layers=3", "teacher.model.hidden=8",
        "teacher.batch_size=8", "protocol.fold=2"]


@pytest.fixture
def run_setup(tiny_root, tmp_path):
    cfg = resolve_config(None, [*TINY, f"data.root='{tiny_root}'", f"run.runs_dir='{tmp_path}'", "data.download=false"])
    return cfg, RunLayout(tmp_path / cfg.run_name)


def test_teacher_stage_writes_checkpoint_metadata_and_manifest(run_setup):
    cfg, layout = run_setup
    key = stage_key(cfg, "teacher")
    out = teacher.run(cfg, layout, key)
    assert out.status == "ran" and valid_manifest(layout.manifest("teacher"), key) is not None
    assert set(out.manifest.files) == set(teacher.FILES)
    model, meta, bn = teacher.load_teacher(layout.stage_dir("teacher") / "teacher.pt")
    data = meta["data"]
    assert data["num_features"] == 3 and data["num_classes"] == 2 and data["feature_kind"] == "node_labels"
    assert data["num_train_graphs"] == 32 and sum(data["node_count_hist"].values()) == 32
    assert 5 <= data["nodes_min"] <= data["nodes_mean"] <= data["nodes_max"] <= 7
    assert 0 < data["edge_density_mean"] < 1 and 1 <= data["degree_mean"] <= 2
    assert meta["split"]["sizes"] == {"train": 32, "val": 4, "test": 4}
    assert len(bn) == 2 * 4 and all(torch.isfinite(v).all() for v in bn.values())  # 2 GIN layers × 2 BN
    assert not model.training
    history = json.loads((layout.stage_dir("teacher") / "history.json").read_text())
    assert len(history) == 4 and "teacher/val/loss" in history[0]
    assert 0 <= out.manifest.metrics["teacher/test/acc"] <= 1
    assert not layout.staging_dir("teacher").exists()


def test_teacher_stage_is_cached_then_forced_and_deterministic(run_setup):
    cfg, layout = run_setup
    key = stage_key(cfg, "teacher")
    first = teacher.run(cfg, layout, key)
    assert teacher.run(cfg, layout, key).status == "cached"
    again = teacher.run(cfg, layout, key, force=True)
    assert again.status == "ran" and again.manifest.digest == first.manifest.digest  # same seed, same bytes
    changed = resolve_config(None, [*TINY, "teacher.epochs=5"])
    assert stage_key(changed, "teacher") != key
    assert teacher.run(cfg, layout, "another-key").status == "ran"


def test_no_validation_selects_last_epoch(tiny_root, tmp_path):
    cfg = resolve_config(None, [*TINY, "protocol.name=holdout", "protocol.val=false", f"data.root='{tiny_root}'",
                                f"run.runs_dir='{tmp_path}'"])
    out = teacher.run(cfg, RunLayout(tmp_path / "r"), "k")
    assert out.manifest.metrics["teacher/select/best_epoch"] == 3
    assert "teacher/val/acc" not in out.manifest.metrics


@pytest.mark.parametrize("protocol, teacher_graphs, expect", [
    (["protocol.name=cv10"], 32, 32), (["protocol.name=holdout"], 24, 28),
    (["protocol.name=holdout", "protocol.val=false"], 28, 28)])
def test_generate_auto_m_is_the_protocols_training_portion(tiny_root, tmp_path, protocol, teacher_graphs, expect):
    """protocol.md §2–3: M = the 8 training folds under cv10, ⌊0.7·40⌋ = 28 under holdout even where the teacher
    trains on 6/7 of it (24) and keeps 4 for validation."""
    from gfkd.stages import generate

    cfg = resolve_config(None, [*TINY, *protocol, f"data.root='{tiny_root}'", "generate.method=randg",
                                "generate.banks=1"])
    layout = RunLayout(tmp_path / "r")
    teacher.run(cfg, layout, "k")
    _, meta, _ = teacher.load_teacher(layout.stage_dir("teacher") / "teacher.pt")
    assert meta["data"]["num_train_graphs"] == teacher_graphs
    out = generate.run(cfg, layout, "g")
    assert generate.auto_num_graphs(meta) == expect == out.manifest.metrics["generate/quality/num_graphs"]


def test_gfkd_reference_parity_trains_a_teacher_with_the_model_level_switches(tiny_root, tmp_path):
    """gfkd.md §8: generate.gfkd.parity=reference sets the teacher's self-loops in the data, no loop on nodes without
    out-edges and dropout on the logits; the checkpoint carries them, a plain student inherits them, a widened one
    does not; the teacher's cache key follows the resolved switches."""
    from gfkd.models.classifier import SWITCHES
    from gfkd.models.widened import build_student
    from gfkd.stages.distill import student_spec

    base = [*TINY, f"data.root='{tiny_root}'", f"run.runs_dir='{tmp_path}'", "data.download=false"]
    cfg = resolve_config(None, [*base, "generate.gfkd.parity=reference"])
    assert cfg.model_switches == {"loops_in_data": True, "skip_isolated": True, "logit_dropout": True}
    layout = RunLayout(tmp_path / "ref")
    teacher.run(cfg, layout, stage_key(cfg, "teacher"))
    model, meta, _ = teacher.load_teacher(layout.stage_dir("teacher") / "teacher.pt")
    assert (model.loops_in_data, model.skip_isolated, model.logit_dropout) == (True, True, True)
    assert meta["model"]["loops_in_data"] and meta["model"]["logit_dropout"]
    plain = student_spec(cfg.distill.model_copy(update={"head": "own"}), model, real=False)
    widened = student_spec(cfg.distill, model, real=False)
    assert plain["loops_in_data"] and plain["skip_isolated"] and plain["logit_dropout"]
    assert "loops_in_data" not in widened
    built = build_student(plain).net  # the spec's switches reach the built student
    assert all(getattr(built, k) for k in SWITCHES) and not any(c.adds_self_loops for c in built.convs)
    clean = resolve_config(None, base)
    assert clean.model_switches == dict.fromkeys(clean.model_switches, False)
    one = resolve_config(None, [*base, "generate.gfkd.parity=reference", "teacher.model.logit_dropout=false"])
    assert one.model_switches["logit_dropout"] is False and one.model_switches["loops_in_data"] is True
    keys = {stage_key(c, "teacher") for c in (cfg, clean, one)}
    assert len(keys) == 3
    # the key follows the resolved switches, not how they were set
    same_as_clean = resolve_config(None, [*base, "teacher.model.self_loops_in_data=false"])
    same_as_ref = resolve_config(None, [*base, "teacher.model.self_loops_in_data=true",
                                        "teacher.model.logit_dropout=true", "data.selfloop_skip_isolated=true"])
    assert stage_key(same_as_clean, "teacher") == stage_key(clean, "teacher")
    assert stage_key(same_as_ref, "teacher") == stage_key(cfg, "teacher")
    key = clean.stage_config("teacher")  # a clean teacher's key holds no trace of the switches
    assert "model_switches" not in key and "selfloop_skip_isolated" not in key["data"]
    assert "self_loops_in_data" not in key["teacher"]["model"]
    assert "self_loops_in_data" not in meta["recipe"]["model"]  # the resolved switches are in meta["model"]
