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
    (["--method", "best_on_test"], "--method 'best_on_test' is invalid: choose one of oad, independent"),
    (["--backbone", "gin"], "--backbone 'gin' is invalid: choose one of gcn, gat, sage"),  # named as typed
    (["group.backbone=gin"], "group.backbone"),
    (["--backbone", "gcn", "group.backbone = gat"], "takes group.backbone from --backbone"),  # spaced: not ignored
    (["group.students=1"], "group.students"),
    (["group.kl_scale=mean"], "group.kl_scale"),
    (["--seeds", "1,2,1"], "--seeds '1,2,1' lists seed 1 twice: give each seed once"),  # n = 3, one "kept"
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


def _tiny(tmp_path):
    return resolve_config(None, ["data.dataset=Cora", "group.students=2", "group.warmup_epochs=1", "group.epochs=2",
                                 "group.hidden=4", f"run.runs_dir='{tmp_path}'"])


def test_a_rerun_keeps_the_seeds_written_under_the_same_key_and_trains_the_rest(tmp_path, monkeypatch, graph):
    """A killed `gfkd group` redid every seed; now the seeds whose files hold the same config-and-code key are kept."""
    from gfkd.group import node

    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)
    cfg = _tiny(tmp_path)
    fresh = runner.run_node_group(cfg, [0, 1, 2], RunLayout(tmp_path / "fresh"), key="k1")
    layout = RunLayout(tmp_path / runner.run_name(cfg))
    runner.run_node_group(cfg, [0, 1], layout, key="k1")
    trained = []
    real = node.train_group
    monkeypatch.setattr(node, "train_group",
                        lambda g, s, seed, *a, **k: trained.append(seed) or real(g, s, seed, *a, **k))
    res = runner.run_node_group(cfg, [0, 1, 2], layout, key="k1")
    assert trained == [2] and res["kept_seeds"] == [0, 1]
    def numbers(rs):
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # the wall time is the machine's

    assert res["summary"] == fresh["summary"] and numbers(res["per_seed"]) == numbers(fresh["per_seed"])

    trained.clear()  # another key (config or code changed): nothing kept
    assert runner.run_node_group(cfg, [0, 1], layout, key="k2")["kept_seeds"] == []
    assert trained == [0, 1]
    trained.clear()  # no key: nothing kept either
    runner.run_node_group(cfg, [1], layout)
    assert trained == [1]
    trained.clear()  # a file made on another device (run.device=auto) or thread count (run.threads=auto)
    runner.run_node_group(cfg, [0], layout, key="k3")
    for other in ("cuda:0/threads=1", "cpu/threads=16"):
        seed0 = json.loads((layout.stage_dir("group") / "seed-0.json").read_text())
        seed0["key"] = f"k3@{other}"
        (layout.stage_dir("group") / "seed-0.json").write_text(json.dumps(seed0))
        assert runner.run_node_group(cfg, [0], layout, key="k3")["kept_seeds"] == []
    assert trained == [0, 0, 0]
    assert json.loads((layout.stage_dir("group") / "seed-0.json").read_text())["key"] == "k3@cpu/threads=1"


def test_a_damaged_or_foreign_seed_file_is_trained_again(tmp_path, monkeypatch, graph):
    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)
    cfg = _tiny(tmp_path)
    layout = RunLayout(tmp_path / "run")
    runner.run_node_group(cfg, [0, 1], layout, key="k")
    out = layout.stage_dir("group")
    (out / "seed-0.json").write_text((out / "seed-0.json").read_text()[:40])  # cut short
    (out / "seed-1.json").write_text((out / "seed-1.json").read_text().replace('"seed": 1', '"seed": 7'))
    assert runner.run_node_group(cfg, [0, 1], layout, key="k")["kept_seeds"] == []
    assert json.loads((out / "seed-0.json").read_text())["report"]["seed"] == 0  # written whole again


def test_a_kept_seed_is_replayed_into_mlflow_with_the_curves_it_was_trained_with(tmp_path, monkeypatch, graph):
    from gfkd.tracking import Tracker

    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _tiny(tmp_path)
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir(parents=True)
    tracker = Tracker(layout, "replay")
    runner.run_node_group(cfg, [0], layout, tracker, key="k")
    runner.run_node_group(cfg, [0], layout, tracker, key="k")
    seeds = tracker.client.search_runs([tracker.experiment_id], "attributes.run_name = 'seed-0'")
    assert sorted(r.data.tags["gfkd.status"] for r in seeds) == ["cached", "ran"]
    def curves(run):
        return {k: [(m.step, m.value) for m in tracker.client.get_metric_history(run.info.run_id, k)]
                for k in run.data.metrics}

    by_status = {r.data.tags["gfkd.status"]: curves(r) for r in seeds}
    assert by_status["ran"] and by_status["ran"] == by_status["cached"]  # every curve and end number, step by step
    for k in range(2):
        students = tracker.client.search_runs([tracker.experiment_id], f"attributes.run_name = 'seed-0-student-{k}'")
        by_status = {r.data.tags["gfkd.status"]: curves(r) for r in students}
        assert set(by_status["ran"]) == {"group/val/acc", "group/test/acc"} and len(by_status["ran"]["group/val/acc"]) == 2
        assert by_status["ran"] == by_status["cached"]


def test_the_same_gfkd_group_command_again_trains_only_the_seeds_not_yet_finished(tmp_path, monkeypatch, graph,
                                                                                  caplog):
    import flows.cli

    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)
    monkeypatch.setattr(flows.cli, "_check_data", lambda *a, **k: None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["group", "--dataset", "Cora", "group.students=2", "group.warmup_epochs=1", "group.epochs=2",
            "group.hidden=4", f"run.runs_dir='{tmp_path}'"]
    assert CliRunner().invoke(app, [*args, "--seeds", "0"]).exit_code == 0
    caplog.clear()
    r = CliRunner().invoke(app, [*args, "--seeds", "0..1"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "group-cora-gcn-oad" / "group" / "results.json").read_text())
    assert res["kept_seeds"] == [0] and [p["seed"] for p in res["per_seed"]] == [0, 1]
    kept = [m for m in caplog.messages if "kept from an earlier run" in m]
    assert len(kept) == 1 and kept[0].startswith("seed 0:"), caplog.messages
    r = CliRunner().invoke(app, [*args, "--seeds", "0..1", "group.lr=0.02"])  # another config: cleared, all trained
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "group-cora-gcn-oad" / "group" / "results.json").read_text())["kept_seeds"] == []


def test_gfkd_group_ends_the_runs_a_killed_command_left_running(tmp_path, monkeypatch, graph):
    """A SIGKILL leaves the seed's runs RUNNING in the folder's database; the next `gfkd group` there ends them."""
    import flows.cli
    from gfkd.tracking import Tracker

    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)
    monkeypatch.setattr(flows.cli, "_check_data", lambda *a, **k: None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["group", "--dataset", "Cora", "group.students=2", "group.warmup_epochs=1", "group.epochs=2",
            "group.hidden=4", f"run.runs_dir='{tmp_path}'", "--seeds", "0"]
    assert CliRunner().invoke(app, args).exit_code == 0
    layout = RunLayout(tmp_path / "group-cora-gcn-oad")
    dead = Tracker(layout, "group-cora").start_run("group")  # what a killed command leaves
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    run = Tracker(layout, "group-cora").client.get_run(dead.run_id)
    assert run.info.status == "KILLED" and "process had died" in run.data.tags["gfkd.ended_by"]


def test_a_killed_runs_half_written_files_are_removed(tmp_path, monkeypatch, graph):
    """A SIGKILL between io.atomic's write and rename leaves `.seed-<s>.json.tmp-PID`; the next run removes it."""
    monkeypatch.setattr("gfkd.group.node.load_citation", lambda *a, **k: graph)
    cfg = _tiny(tmp_path)
    layout = RunLayout(tmp_path / runner.run_name(cfg))
    half = layout.stage_dir("group") / ".seed-0.json.tmp-999999"
    half.parent.mkdir(parents=True)
    half.write_text('{"key": ')
    runner.run_node_group(cfg, [0], layout, key="k1")
    assert not half.exists() and (layout.stage_dir("group") / "seed-0.json").is_file()
