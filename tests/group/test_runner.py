"""`gfkd group`: bad input is one line and exit 2; a run writes per-seed files, results.json and results.md."""

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from gfkd.config import resolve_config
from gfkd.group import runner
from gfkd.layout import RunLayout


@pytest.mark.parametrize("args,needle", [
    (["--dataset", "MUTAG"], "--dataset 'MUTAG'"),
    (["--seeds", "a..b"], "--seeds"),
    (["--method", "best_on_test"], "group.method"),
    (["--backbone", "gin"], "group.backbone"),
    (["group.students=1"], "group.students"),
    (["group.kl_scale=mean"], "group.kl_scale"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    r = CliRunner().invoke(app, ["group", *args, f"run.runs_dir='{tmp_path}'"])
    assert r.exit_code == 2, r.output
    lines = [l for l in r.output.splitlines() if l.startswith("gfkd: error:")]
    assert len(lines) == 1 and needle in lines[0]


def test_run_writes_per_seed_histories_and_the_summary(tmp_path, monkeypatch, graph):
    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)  # the runner imports it when it runs
    cfg = resolve_config(None, ["data.dataset=Cora", "group.students=2", "group.warmup_epochs=1", "group.epochs=2",
                                "group.hidden=4", f"run.runs_dir='{tmp_path}'"])
    layout = RunLayout(tmp_path / runner.run_name(cfg))
    res = runner.run_node_group(cfg, [0, 1], layout)
    out = layout.stage_dir("group")
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"] == res["summary"] and [r["seed"] for r in saved["per_seed"]] == [0, 1]
    assert set(saved["summary"]) == {"mean_students", "val_best_student", "ensemble"}
    seed0 = json.loads((out / "seed-0.json").read_text())
    assert len(seed0["val_acc"]) == 2 and len(seed0["val_acc"][0]) == 2 and len(seed0["losses"]) == 3
    assert "| oad (GCN, K = 2) |" in (out / "results.md").read_text()
    assert layout.root.name == "group-cora-gcn-oad"
    assert not any(k.endswith("_acc") for rec in seed0["losses"] for k in rec)  # accuracies are not losses


def test_the_node_group_logs_stage_split_metric_names(tmp_path, monkeypatch, graph):
    """The test ensemble accuracy was also logged as group/train/ensemble_test_acc, and ê, the val-best student and
    the wall time had no split: every key now reads stage/split/metric."""
    from gfkd.tracking import Tracker

    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = resolve_config(None, ["data.dataset=Cora", "group.students=2", "group.warmup_epochs=1", "group.epochs=2",
                                "group.hidden=4", f"run.runs_dir='{tmp_path}'"])
    layout = RunLayout(tmp_path / runner.run_name(cfg))
    layout.root.mkdir(parents=True)
    tracker = Tracker(layout, "names")
    runner.run_node_group(cfg, [0], layout, tracker)
    keys = {k for run in tracker.client.search_runs([tracker.experiment_id]) for k in run.data.metrics}
    assert keys and all(k.count("/") == 2 and k.split("/")[1] in ("train", "val", "test", "time") for k in keys), keys
    assert not {k for k in keys if k.startswith("group/train/") and k.endswith("_acc")}
    assert {"group/val/selected_epoch", "group/val/best_student", "group/time/wall_s"} <= keys


def test_a_changed_config_clears_the_old_results_before_the_run(tmp_path):
    """An interrupted run must not leave the quick look's results beside the new config.json."""
    layout = RunLayout(tmp_path / "group-cora-gcn-oad")
    quick = resolve_config(None, ["data.dataset=Cora", "group.epochs=5"])
    assert runner.start_folder(layout, quick) is False  # a fresh folder
    (layout.stage_dir("group") / "results.json").parent.mkdir(parents=True)
    (layout.stage_dir("group") / "results.json").write_text("{}")
    assert runner.start_folder(layout, quick) is False  # same config: results kept until replaced
    assert (layout.stage_dir("group") / "results.json").is_file()
    full = resolve_config(None, ["data.dataset=Cora"])
    assert runner.start_folder(layout, full) is True
    assert not layout.stage_dir("group").exists()
    assert json.loads(layout.config.read_text())["group"]["epochs"] == full.group.epochs
