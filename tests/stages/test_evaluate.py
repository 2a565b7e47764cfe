"""The evaluate stage scores every model of a tiny run on the real test graphs and writes every row of the table."""

import json

import pytest
import torch

from gfkd.config import resolve_config
from gfkd.layout import RunLayout
from gfkd.stages import distill, evaluate, generate, group
from gfkd.versions import cpu_model

GEN = ["generate.iterations=5", "generate.banks=1", "generate.batch_size=40", "generate.num_graphs=40"]


@pytest.fixture(scope="module")
def run_dirs(tiny_root, tiny_teacher_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    cfg = resolve_config(None, [*GEN, "data.dataset=TINY", f"data.root='{tiny_root}'", "data.download=false",
                                f"run.runs_dir='{tmp}'", "teacher.epochs=3", "distill.epochs=2", "distill.seeds=2",
                                "distill.student.layers=2", "distill.student.hidden=8", "group.graph.warmup_epochs=1",
                                "group.graph.epochs=1", "group.graph.students=2"])
    layout = RunLayout(tmp / "run")
    generate.run(cfg, layout, "g", teacher_dir=tiny_teacher_dir)
    dirs = {"teacher": tiny_teacher_dir, "generate": layout.stage_dir("generate")}
    distill.run(cfg, layout, "d", teacher_dir=tiny_teacher_dir, generate_dir=dirs["generate"])
    group.run(cfg, layout, "gr", teacher_dir=tiny_teacher_dir, generate_dir=dirs["generate"])
    dirs |= {"distill": layout.stage_dir("distill"), "group": layout.stage_dir("group")}
    return cfg, layout, dirs


def test_every_model_is_scored_and_every_row_present(run_dirs):
    cfg, layout, dirs = run_dirs
    out = evaluate.run(cfg, layout, "e", stage_dirs=dirs)
    res = json.loads((layout.stage_dir("evaluate") / "results.json").read_text())
    names = [r["name"] for r in res["rows"]]
    # protocol.md §6's rows, in its order, each with its value or "—" and how to run it
    order = ["majority class", "teacher", "student (real data)", "KD (real data)", "RandG", "DeepInvG", "GFKD",
             "GFKD (fair)", "ACGKD (acgkd recipe)", "ACGKD (teacher alone)", "group (oad_global): mean over students",
             "group (oad_global): picked student", "group (oad_global): ensemble"]
    assert [n for n in names if n in order] == order
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["RandG"]["accs"] == [] and "generate.method=randg distill.recipe=plain" in rows["RandG"]["note"]
    assert rows["GFKD (fair)"]["accs"] == [] and "generate.gfkd.fair=true" in rows["GFKD (fair)"]["note"]
    assert all(r["accs"] or r["note"] for r in res["rows"])  # no row without a value or its reason
    assert not [r["name"] for r in res["rows"] if r["accs"] and r["note"]]  # and no reason on a row with a value
    assert len(rows["ACGKD (acgkd recipe)"]["accs"]) == 2 and len(rows["group (oad_global): mean over students"]["accs"]) == 2
    # the same code scores the distill stage's students: its own recorded numbers agree
    recs = json.loads((dirs["distill"] / "results.json").read_text())["records"]
    assert res["accuracy"]["pseudo-s1"] == pytest.approx(recs["pseudo-s1"]["test_acc"])
    assert res["accuracy"]["kd_real-s0"] == pytest.approx(recs["kd_real-s0"]["test_acc"])
    # protocol.md §4 and §6 beside each data-free number: val-selected accuracy, seed agreement, collapsed students;
    # §5: the widened student's parameters by part. Each against what the distill stage recorded on its own
    acgkd, dm = rows["ACGKD (acgkd recipe)"], json.loads((dirs["distill"] / "manifest.json").read_text())["metrics"]
    assert acgkd["val_selected"] == [recs[f"pseudo-s{k}"]["test_acc_val_selected"] for k in range(2)]
    assert acgkd["agreement"] == pytest.approx(dm["distill/test/seed_agreement"])
    assert acgkd["collapsed"] == sum(recs[f"pseudo-s{k}"]["collapsed"] for k in range(2))
    assert acgkd["parts"] == {k: dm[f"distill/params/{k}"] for k in ("body", "projector", "head")}
    assert acgkd["params"] == sum(acgkd["parts"].values())
    assert rows["KD (real data)"]["val_selected"] == [] and rows["KD (real data)"]["collapsed"] == sum(
        recs[f"kd_real-s{k}"]["collapsed"] for k in range(2))
    g_numbers = json.loads((dirs["group"] / "results.json").read_text())["numbers"]
    group_mean, ens = rows["group (oad_global): mean over students"], rows["group (oad_global): ensemble"]
    assert group_mean["val_selected"] == [g_numbers[f"acc_student{k}_val_selected"] for k in range(2)]
    assert ens["val_selected"] == [g_numbers["acc_ensemble_val_selected"]] and ens["agreement"] is None
    assert group_mean["collapsed"] == g_numbers["collapsed"] and ens["collapsed"] == g_numbers["collapsed_ensemble"]
    # §6's generator columns, from the generate stage's own figures
    gen = json.loads((dirs["generate"] / "manifest.json").read_text())["metrics"]
    pseudo = res["pseudo_graphs"]
    assert pseudo["pseudo-graphs"] == f"{gen['generate/quality/num_graphs']:,.0f}" == "40"
    assert pseudo["pseudo-graph parameters (real nodes only)"] == f"{gen['generate/params/pseudo_graph']:,.0f}"
    assert pseudo["shard-set bytes"] == f"{gen['generate/size/shard_bytes']:,.0f}"
    assert pseudo["teacher agreement with the targets"].startswith(f"{gen['generate/quality/teacher_agreement']:.3f}")
    assert "| ACGKD (acgkd recipe) | " in (report := (layout.stage_dir("evaluate") / "report.md").read_text())
    assert "## Pseudo-graphs of the generate stage" in report and "| symmetric-pair fraction | " in report
    assert "command: not recorded (the stages were called from Python" in report
    m = out.manifest.metrics
    assert 0 <= m["evaluate/test/acc_teacher"] <= 1 and "evaluate/test/acc_group_ensemble" in m
    assert "| majority class |" in report and "torch" in report and "![confusion.png]" in report
    assert f"kernels {torch.backends.cpu.get_cpu_capability()})" in report  # which CPU kernels made the floats
    assert f"{cpu_model()}, kernels" in report  # and on which processor (docs/pipeline.md, "Across machines")
    for f in evaluate.FIGURES:
        assert (layout.stage_dir("evaluate") / f).stat().st_size > 1000
    # protocol.md §1: the default's BN targets are summaries of the training graphs, beyond the teacher alone; the
    # report says so and keeps the teacher-alone row, "—" with how to run it
    assert "BN statistics the teacher stage computed over the training graphs (generate.bn_target=auto)" in report
    assert "bn_target=running" in rows["ACGKD (teacher alone)"]["note"] and not rows["ACGKD (teacher alone)"]["accs"]
    assert "run.deterministic=true, run.threads=1" in report
    # the group's wall time, a data-free row's, counts its pseudo-graphs' generation as ACGKD's does
    gen_wall = json.loads((dirs["generate"] / "manifest.json").read_text())["metrics"]["generate/time/wall_s"]
    group_wall = json.loads((dirs["group"] / "manifest.json").read_text())["metrics"]["group/time/wall_s"]
    assert rows["group (oad_global): ensemble"]["wall_s"] == pytest.approx(gen_wall + group_wall)


def test_the_data_free_line_names_what_generation_read():
    cfg = resolve_config(None, ["generate.bn_target=running"])
    assert "(teacher alone); no training graph" in evaluate.data_free_reads(cfg, "acgkd")
    assert "no BN statistics" in evaluate.data_free_reads(cfg, "randg")
    assert "teacher alone" in evaluate.data_free_reads(resolve_config(None, []), "gfkd")  # GFKD's default: running
    assert "class counts" not in evaluate.data_free_reads(resolve_config(None, []), "acgkd")
    for prior in ("generate.targets=prior", "distill.class_weight=prior"):  # read the metadata's class counts
        line = evaluate.data_free_reads(resolve_config(None, [prior]), "acgkd")
        assert f"training class counts ({prior}: not data-free" in line, line
    plain = resolve_config(None, ["distill.class_weight=prior", "distill.recipe=plain"])  # which has no class weights
    assert "class counts" not in evaluate.data_free_reads(plain, "acgkd")
    fair = evaluate.data_free_reads(resolve_config(None, ["generate.gfkd.fair=true"]), "gfkd")  # matches `auto`
    assert "over the training graphs (generate.gfkd.fair=true)" in fair and "teacher alone" not in fair


def test_majority_row_is_the_test_frequency_of_the_training_majority(run_dirs, tiny_root, tmp_path):
    import numpy as np

    from gfkd.data import datasets
    from gfkd.data.splits import make_split

    cfg, layout, dirs = run_dirs
    res = json.loads((layout.stage_dir("evaluate") / "results.json").read_text()) if layout.stage_dir(
        "evaluate").is_dir() else None
    if res is None:
        evaluate.run(cfg, layout, "e", stage_dirs=dirs)
        res = json.loads((layout.stage_dir("evaluate") / "results.json").read_text())
    ds = datasets.load_tu("TINY", tiny_root, tmp_path / "c", allow_download=False)
    labels = ds.labels
    split = make_split(labels, "cv10", 0, 0, True)
    major = np.bincount(labels[split.train]).argmax()
    row = next(r for r in res["rows"] if r["name"] == "majority class")
    assert row["accs"] == [pytest.approx(float((labels[split.test] == major).mean()))]
    # every model is scored on the test split, against its true labels (confusion rows: true class)
    counts = np.bincount(labels[split.test], minlength=2).tolist()
    assert len(res["confusion"]) > 2
    for name, m in res["confusion"].items():
        assert [sum(r) for r in m] == counts, name
        if name in res["accuracy"]:
            assert res["accuracy"][name] == pytest.approx(np.trace(m) / len(split.test)), name
    # and the teacher's number is its checkpoint's own prediction on those graphs, recomputed here
    import torch
    from torch_geometric.data import Batch

    from gfkd.stages.teacher import load_teacher

    teacher, _, _ = load_teacher(dirs["teacher"] / "teacher.pt")
    b = Batch.from_data_list(ds.subset(split.test))
    with torch.no_grad():
        pred = teacher.eval()(b.x, b.edge_index, b.batch, b.num_graphs).argmax(-1).numpy()
    assert res["accuracy"]["teacher"] == pytest.approx(float((pred == labels[split.test]).mean()))


def test_a_with_data_group_is_labelled_so(run_dirs, tiny_teacher_dir, tmp_path):
    cfg, _, dirs = run_dirs
    cfg = cfg.model_copy(update={"group": cfg.group.model_copy(update={
        "graph": cfg.group.graph.model_copy(update={"data": "real"})})})
    layout = RunLayout(tmp_path / "real")
    group.run(cfg, layout, "gr-real", teacher_dir=tiny_teacher_dir)
    evaluate.run(cfg, layout, "e-real", stage_dirs={**dirs, "group": layout.stage_dir("group")})
    names = [r["name"] for r in json.loads((layout.stage_dir("evaluate") / "results.json").read_text())["rows"]]
    assert "group (oad_global, on the real training graphs, with data; val-selected): ensemble" in names
    assert not any(n.startswith("group (oad_global):") for n in names)


def test_a_calibrated_group_names_its_anchor_tau(run_dirs, tiny_teacher_dir, tmp_path):
    cfg, _, dirs = run_dirs
    cfg = cfg.model_copy(update={"group": cfg.group.model_copy(update={
        "graph": cfg.group.graph.model_copy(update={"anchor_temperature": "calibrated"})})})
    layout = RunLayout(tmp_path / "cal")
    out = group.run(cfg, layout, "gr-cal", teacher_dir=tiny_teacher_dir, generate_dir=dirs["generate"])
    tau = out.manifest.info["anchor_tau"]
    assert tau == json.loads((layout.stage_dir("group") / "results.json").read_text())["anchor_temperature"]
    evaluate.run(cfg, layout, "e-cal", stage_dirs={**dirs, "group": layout.stage_dir("group")})
    names = [r["name"] for r in json.loads((layout.stage_dir("evaluate") / "results.json").read_text())["rows"]]
    assert f"group (oad_global, anchor τ {tau:.1f} calibrated): ensemble" in names


@pytest.mark.parametrize("setting, filled, other, how", [
    ({"method": "gfkd"}, "GFKD (acgkd recipe)", "GFKD (fair)", "generate.gfkd.fair=true"),
    ({"method": "gfkd", "fair": True}, "GFKD (fair) (acgkd recipe)", "GFKD", "generate.gfkd.fair=false"),
    ({"bn_target": "running"}, "ACGKD (teacher alone) (acgkd recipe)", "ACGKD", "generate.bn_target=auto"),
    ({"method": "deepinvg", "fair": True}, "DeepInvG, shared fixes (acgkd recipe)", "DeepInvG (fair)", None),
    ({"method": "gfkd", "bn_target": "running"}, "GFKD (acgkd recipe)", "ACGKD",
     "generate.method=acgkd generate.bn_target=auto"),
])
def test_the_run_fills_its_own_generator_row_and_every_other_says_how_to_run_it(run_dirs, tmp_path, setting, filled,
                                                                                 other, how):
    """protocol.md §6 and §8.7: GFKD as published and GFKD (fair), ACGKD and ACGKD from the teacher alone are rows of
    every report; the run's settings name the row its students fill (labelled from the config, as for the group)."""
    cfg, _, dirs = run_dirs
    g = cfg.generate
    gen = g.model_copy(update={"method": setting.get("method", g.method), "bn_target": setting.get("bn_target", g.bn_target),
                               "gfkd": g.gfkd.model_copy(update={"fair": setting.get("fair", False)})})
    layout = RunLayout(tmp_path / "gen")
    evaluate.run(cfg.model_copy(update={"generate": gen}), layout, "e-gen", stage_dirs=dirs)
    rows = {r["name"]: r for r in json.loads((layout.stage_dir("evaluate") / "results.json").read_text())["rows"]}
    assert len(rows[filled]["accs"]) == 2
    if how:
        assert rows[other]["accs"] == [] and how in rows[other]["note"] and filled.split(" (acgkd")[0] in rows[other]["note"]
    else:  # no such row: the fair DeepInvG fills DeepInvG's, named so
        assert other not in rows and "generate.gfkd.fair=false" in rows["GFKD"]["note"]
    keys = [r["key"] for r in json.loads((layout.stage_dir("evaluate") / "results.json").read_text())["rows"]]
    assert len([k for k in keys if k in evaluate.REPORT_GENERATORS or k == "pseudo"]) == 6  # each §6 generator row once
    assert all(r["accs"] or r["note"] for r in rows.values())


def test_a_rerun_repeats_the_digest_though_the_wall_times_differ(run_dirs, tmp_path):
    """Wall times (report, table, results, the time plot) are volatile: out of the digest, still checked on disk."""
    import shutil

    cfg, _, dirs = run_dirs
    slower = tmp_path / "distill"  # the same students, as a rerun that took longer leaves them
    shutil.copytree(dirs["distill"], slower)
    man = json.loads((slower / "manifest.json").read_text())
    for key in [k for k in man["metrics"] if k.startswith("distill/time/wall_s")]:
        man["metrics"][key] += 1.0
    (slower / "manifest.json").write_text(json.dumps(man))
    a = evaluate.run(cfg, RunLayout(tmp_path / "a"), "e", stage_dirs=dirs)
    b = evaluate.run(cfg, RunLayout(tmp_path / "b"), "e", stage_dirs=dirs | {"distill": slower})
    assert a.manifest.files["report.md"].sha256 != b.manifest.files["report.md"].sha256  # the wall times moved
    assert a.manifest.digest == b.manifest.digest
    files = a.manifest.files
    assert {f for f, e in files.items() if e.volatile} == set(evaluate.TIMED)
    assert files["confusion.png"].sha256 == b.manifest.files["confusion.png"].sha256


def test_the_reports_config_hash_ignores_where_the_run_and_the_data_live(run_dirs, tmp_path):
    """The same settings under another runs_dir or data root gave another hash, every cache key being equal."""
    import shutil

    cfg, layout, dirs = run_dirs
    shutil.copytree(cfg.data.root, tmp_path / "other-root")  # the same dataset elsewhere
    moved = cfg.model_copy(update={"run": cfg.run.model_copy(update={"runs_dir": tmp_path / "elsewhere"}),
                                   "data": cfg.data.model_copy(update={"root": tmp_path / "other-root"})})
    hashes = []
    for c, where in ((cfg, "a"), (moved, "b")):
        evaluate.run(c, RunLayout(tmp_path / where), "e", stage_dirs=dirs)
        facts = json.loads((RunLayout(tmp_path / where).stage_dir("evaluate") / "results.json").read_text())["facts"]
        hashes.append(facts["config hash"])
    assert hashes[0] == hashes[1]
    other = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"epochs": 3})})
    evaluate.run(other, RunLayout(tmp_path / "c"), "e", stage_dirs=dirs)
    facts = json.loads((RunLayout(tmp_path / "c").stage_dir("evaluate") / "results.json").read_text())["facts"]
    assert facts["config hash"] != hashes[0]


def test_the_report_names_the_command_that_started_the_run(run_dirs, tmp_path, monkeypatch):
    """protocol.md §7: every report states the command that produced it; flows/cli.py records it for the stages."""
    from gfkd.versions import COMMAND_ENV, command_line, record_command

    cfg, _, dirs = run_dirs
    monkeypatch.setenv(COMMAND_ENV, "")
    assert record_command(["benchmark", "--datasets", "MUTAG", "group.backbone = gat"]) == command_line() == (
        "gfkd benchmark --datasets MUTAG 'group.backbone = gat'")  # quoted as a shell reads it back
    layout = RunLayout(tmp_path / "cmd")
    evaluate.run(cfg, layout, "e-cmd", stage_dirs=dirs)
    report = (layout.stage_dir("evaluate") / "report.md").read_text()
    assert "- command: `gfkd benchmark --datasets MUTAG 'group.backbone = gat'`; every setting" in report


def test_without_a_validation_split_no_val_selected_number_is_shown(run_dirs, tmp_path):
    """protocol.md §2: with protocol.val=false every selection is the last epoch, so the distill stage's "val-selected"
    record is the last epoch's number: it is not shown as val-selected, and the distill summary leaves it out."""
    cfg, _, dirs = run_dirs
    holdout = cfg.model_copy(update={"protocol": cfg.protocol.model_copy(update={"name": "holdout", "val": False})})
    layout = RunLayout(tmp_path / "noval")
    evaluate.run(holdout, layout, "e-noval", stage_dirs=dirs)
    rows = {r["name"]: r for r in json.loads((layout.stage_dir("evaluate") / "results.json").read_text())["rows"]}
    assert rows["ACGKD (acgkd recipe)"]["accs"] and rows["ACGKD (acgkd recipe)"]["val_selected"] == []
    recs = json.loads((dirs["distill"] / "results.json").read_text())["records"]
    assert "distill/test/acc_val_selected" in distill.summarise(recs)
    assert not [k for k in distill.summarise(recs, val=False) if "val_selected" in k]
