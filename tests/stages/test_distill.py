"""The distill stage on a tiny teacher and shard set: every variant trains and is recorded; the data-free students
never see a real training graph; a killed stage resumes without redoing finished students; reruns repeat bitwise."""

import json
import math

import numpy as np
import pytest
import torch

from gfkd.config import resolve_config
from gfkd.data import datasets
from gfkd.errors import ConfigError
from gfkd.io.manifest import valid_manifest
from gfkd.layout import RunLayout
from gfkd.stages import distill, generate

GEN = ["generate.iterations=5", "generate.banks=2", "generate.batch_size=32", "generate.num_graphs=24"]
FAST = ["distill.epochs=3", "distill.seeds=2", "teacher.epochs=3"]


@pytest.fixture(scope="module")
def shard_dir(tiny_teacher_dir, tmp_path_factory):
    layout = RunLayout(tmp_path_factory.mktemp("gen"))
    generate.run(resolve_config(None, GEN), layout, "g", teacher_dir=tiny_teacher_dir)
    return layout.stage_dir("generate")


def _cfg(tiny_root, tmp_path, *extra):
    return resolve_config(None, [*GEN, *FAST, "data.dataset=TINY", f"data.root='{tiny_root}'", "data.download=false",
                                 f"run.runs_dir='{tmp_path}'", "teacher.model.layers=3", "teacher.model.hidden=8",
                                 "distill.student.layers=2", "distill.student.hidden=8", *extra])


def test_edge_augmentation_refuses_a_directed_bank(tmp_path, tiny_root, tiny_teacher_dir):
    """augment rebuilds undirected edge lists: on a directed bank it would drop every edge's direction."""
    layout = RunLayout(tmp_path / "gen")
    generate.run(resolve_config(None, [*GEN, "generate.method=randg", "generate.randg.directed=true"]), layout, "g",
                 teacher_dir=tiny_teacher_dir)
    for knob in ("edge_flip=0.1", "edge_add=0.5", "hub=0.5"):
        with pytest.raises(ConfigError, match="are directed"):
            distill.run(_cfg(tiny_root, tmp_path, f"distill.augment.{knob}", "distill.baselines=[]"),
                        RunLayout(tmp_path / "run"), "k", teacher_dir=tiny_teacher_dir,
                        generate_dir=layout.stage_dir("generate"))
    distill.run(_cfg(tiny_root, tmp_path, "distill.augment.node_noise=0.1", "distill.baselines=[]", "distill.seeds=1"),
                RunLayout(tmp_path / "noise"), "k", teacher_dir=tiny_teacher_dir,
                generate_dir=layout.stage_dir("generate"))  # node noise keeps the edges: allowed


def test_every_variant_trains_and_is_summarised(tmp_path, tiny_root, tiny_teacher_dir, shard_dir):
    layout = RunLayout(tmp_path / "run")
    out = distill.run(_cfg(tiny_root, tmp_path), layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    assert out.status == "ran" and valid_manifest(layout.manifest("distill"), "k") is not None
    m = out.manifest.metrics
    for key in ("distill/test/acc", "distill/test/acc_kd_real", "distill/test/acc_student_real",
                "distill/test/seed_agreement", "distill/params/projector", "distill/params/head"):
        assert key in m and np.isfinite(m[key])
    assert m["distill/params/projector"] > 0  # the default recipe: GAT projector + reused head
    results = json.loads((layout.stage_dir("distill") / "results.json").read_text())
    assert set(results["records"]) == {f"{v}-s{s}" for v in ("pseudo", "kd_real", "student_real") for s in (0, 1)}
    rec = json.loads((layout.stage_dir("distill") / "students" / "pseudo-s0.result.json").read_text())
    assert len(rec["history"]) == 3 and rec["spec"]["kind"] == "widened"


def test_data_free_students_never_open_the_training_split(tmp_path, tiny_root, tiny_teacher_dir, shard_dir,
                                                          monkeypatch):
    """The guard of protocol.md §8.3: with no real-data baselines, no training-split graph is ever requested."""
    from gfkd.data.splits import make_split

    cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]")
    labels = datasets.load_tu("TINY", tiny_root, tmp_path / "c", allow_download=False).labels
    train = set(make_split(labels, "cv10", 0, 0, True).train.tolist())
    requested: list[int] = []
    orig = datasets.GraphDataset.subset

    def spy(self, idx):
        requested.extend(int(i) for i in idx)
        return orig(self, idx)

    monkeypatch.setattr(datasets.GraphDataset, "subset", spy)
    distill.run(cfg, RunLayout(tmp_path / "run"), "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    assert requested and not train & set(requested)


def test_killed_stage_resumes_finished_students_and_repeats_bitwise(tmp_path, tiny_root, tiny_teacher_dir, shard_dir):
    cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]")
    whole = RunLayout(tmp_path / "whole")
    distill.run(cfg, whole, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    # a run killed after its first student: the staging folder holds that student's files only
    resumed = RunLayout(tmp_path / "resumed")
    staging = resumed.staging_dir("distill")
    (staging / "students").mkdir(parents=True)
    (staging / ".cache_key").write_text("k")
    for ext in ("pt", "json", "result.json"):
        (staging / "students" / f"pseudo-s0.{ext}").write_bytes(
            (whole.stage_dir("distill") / "students" / f"pseudo-s0.{ext}").read_bytes())
    marker = json.loads((staging / "students" / "pseudo-s0.result.json").read_text())
    marker["wall_s"] = -1.0  # recognisable: a resumed student is read back, not retrained
    (staging / "students" / "pseudo-s0.result.json").write_text(json.dumps(marker))
    distill.run(cfg, resumed, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    a = json.loads((whole.stage_dir("distill") / "results.json").read_text())["records"]
    b = json.loads((resumed.stage_dir("distill") / "results.json").read_text())["records"]
    assert b["pseudo-s0"]["wall_s"] == -1.0
    assert a["pseudo-s1"]["test_pred"] == b["pseudo-s1"]["test_pred"]
    sa = torch.load(whole.stage_dir("distill") / "students" / "pseudo-s1.pt", weights_only=True)["state_dict"]
    sb = torch.load(resumed.stage_dir("distill") / "students" / "pseudo-s1.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_plain_recipe_uses_an_own_head_fixed_temperature_and_no_class_weights(tmp_path, tiny_root, tiny_teacher_dir,
                                                                              shard_dir):
    """gfkd.md §5: L = T²·(1/B) Σ_g KL at T = 2, every graph every epoch, pseudo-labels unused; class weights
    (acgkd.md §11, `balanced` by default on featureless sets) and the CE to the targets belong to the ACGKD recipe."""
    eff = resolve_config(None, ["distill.recipe=plain", "distill.beta_ce=1", "distill.class_weight=prior"]).distill
    assert (eff.effective().beta_ce, eff.effective().class_weight) == (0.0, "none")
    layout = RunLayout(tmp_path / "run")
    out = distill.run(_cfg(tiny_root, tmp_path, "distill.recipe=plain", "distill.baselines=[]", "distill.seeds=1",
                           "distill.class_weight=balanced"),
                      layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    rec = json.loads((layout.stage_dir("distill") / "students" / "pseudo-s0.result.json").read_text())
    assert rec["spec"]["kind"] == "plain" and out.manifest.metrics["distill/params/projector"] == 0
    assert {h["distill/train/tau"] for h in rec["history"]} == {2.0}
    assert {h["distill/train/fraction"] for h in rec["history"]} == {1.0}
    assert json.loads((layout.stage_dir("distill") / "results.json").read_text())["class_weights"] is None
    acgkd = RunLayout(tmp_path / "acgkd")  # the same switch under the ACGKD recipe weighs
    distill.run(_cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1", "distill.class_weight=balanced",
                     "distill.epochs=1"), acgkd, "k2", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    assert json.loads((acgkd.stage_dir("distill") / "results.json").read_text())["class_weights"] is not None


def test_prior_class_weights_give_the_teacher_classes_the_training_shares(tmp_path, tiny_root, tiny_teacher_dir,
                                                                           shard_dir):
    import shutil

    from gfkd.io.shards import read_shard_set, table_to_graphs

    teacher = tmp_path / "teacher"  # the tiny set is balanced: give the copy's metadata a 3 : 1 training split
    shutil.copytree(tiny_teacher_dir, teacher)
    meta = json.loads((teacher / "teacher.json").read_text())
    meta["data"]["class_counts"] = [24, 8]
    (teacher / "teacher.json").write_text(json.dumps(meta))
    layout = RunLayout(tmp_path / "run")
    distill.run(_cfg(tiny_root, tmp_path, "distill.class_weight=prior", "distill.baselines=[]", "distill.seeds=1"),
                layout, "k", teacher_dir=teacher, generate_dir=shard_dir)
    w = torch.tensor(json.loads((layout.stage_dir("distill") / "results.json").read_text())["class_weights"])
    graphs = [g for t in read_shard_set(shard_dir / "shards") for g in table_to_graphs(t)]
    pred = torch.cat([g.teacher_logits.view(1, -1) for g in graphs]).argmax(-1)
    per_class = torch.bincount(pred, minlength=2).float() * w  # total weight of each predicted class
    assert torch.allclose(per_class / per_class.sum(), torch.tensor([0.75, 0.25]), atol=1e-6)
    plain = RunLayout(tmp_path / "plain")
    distill.run(_cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1"), plain, "k2",
                teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    assert json.loads((plain.stage_dir("distill") / "results.json").read_text())["class_weights"] is None
    del meta["data"]["class_counts"]  # a teacher saved before the field: a one-line error naming the fix
    (teacher / "teacher.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="class_counts"):
        distill.run(_cfg(tiny_root, tmp_path, "distill.class_weight=prior", "distill.baselines=[]"),
                    RunLayout(tmp_path / "old"), "k3", teacher_dir=teacher, generate_dir=shard_dir)


def test_the_curriculum_admits_every_graph_by_the_last_epoch_even_at_until_1(tmp_path, tiny_root, tiny_teacher_dir,
                                                                            shard_dir):
    layout = RunLayout(tmp_path / "run")
    distill.run(_cfg(tiny_root, tmp_path, "distill.curriculum.until=1.0", "distill.baselines=[]", "distill.seeds=1"),
                layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    rec = json.loads((layout.stage_dir("distill") / "students" / "pseudo-s0.result.json").read_text())
    fractions = [h["distill/train/fraction"] for h in rec["history"]]
    assert fractions[0] < 1.0 and fractions[-1] == 1.0  # E_c = E would admit the hardest graphs only after training


@pytest.mark.parametrize("extra", [[], ["distill.adversarial.rounds=true"]])
def test_shards_of_another_teacher_are_refused(tmp_path, tiny_root, tiny_teacher_dir, shard_dir, extra):
    from gfkd.errors import StageError
    from gfkd.stages.teacher import load_teacher

    _, meta, _ = load_teacher(tiny_teacher_dir / "teacher.pt")
    other = tmp_path / "teacher"
    other.mkdir()
    state = torch.load(tiny_teacher_dir / "teacher.pt", weights_only=True)
    state["state_dict"]["classifier.bias"] += 5.0
    torch.save(state, other / "teacher.pt")
    (other / "teacher.json").write_text((tiny_teacher_dir / "teacher.json").read_text())
    with pytest.raises(StageError, match="stored teacher logits"):
        distill.run(_cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1", *extra),
                    RunLayout(tmp_path / "r"), "k", teacher_dir=other, generate_dir=shard_dir)


def test_augmented_students_see_perturbed_graphs_relabelled_by_the_teacher(tmp_path, tiny_root, tiny_teacher_dir,
                                                                            shard_dir):
    aug = ["distill.augment.edge_flip=0.3", "distill.augment.node_noise=0.3"]
    plain_cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1")
    aug_cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1", *aug)
    add_cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1", "distill.augment.edge_add=0.5")
    assert aug_cfg.distill.model_copy(update={"recipe": "plain"}).effective().augment.edge_flip == 0  # plain: off
    assert add_cfg.distill.model_copy(update={"recipe": "plain"}).effective().augment.edge_add == 0
    hist = {}
    for name, cfg in [("plain", plain_cfg), ("aug", aug_cfg), ("add", add_cfg)]:
        layout = RunLayout(tmp_path / name)
        distill.run(cfg, layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
        hist[name] = json.loads((layout.stage_dir("distill") / "students" / "pseudo-s0.result.json").read_text())
    kd = {n: [h["distill/train/kd"] for h in hist[n]["history"]] for n in hist}
    for n in ("aug", "add"):
        assert all(math.isfinite(v) for v in kd[n]) and kd[n] != kd["plain"]  # other graphs, other teacher targets


def test_adversarial_rounds_run_data_free_and_are_logged(tmp_path, tiny_root, tiny_teacher_dir, shard_dir,
                                                         monkeypatch):
    from gfkd.data.splits import make_split

    rounds = ["distill.adversarial.rounds=true", "distill.adversarial.steps=2"]
    cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1", *rounds)
    assert "generate" in cfg.stage_config("distill")  # the rounds read generate.*: it enters the cache key
    assert cfg.distill.model_copy(update={"recipe": "plain"}).effective().adversarial.rounds is False
    labels = datasets.load_tu("TINY", tiny_root, tmp_path / "c", allow_download=False).labels
    train = set(make_split(labels, "cv10", 0, 0, True).train.tolist())
    requested: list[int] = []
    orig = datasets.GraphDataset.subset
    monkeypatch.setattr(datasets.GraphDataset, "subset", lambda self, idx: requested.extend(map(int, idx)) or orig(self, idx))
    layout = RunLayout(tmp_path / "adv")
    distill.run(cfg, layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    assert requested and not train & set(requested)
    rec = json.loads((layout.stage_dir("distill") / "students" / "pseudo-s0.result.json").read_text())
    chunks = len(list((shard_dir / "shards").glob("_state-*.pt")))
    assert rec["generator_steps"] == 3 * 2 * chunks  # epochs × steps × chunks
    assert all(math.isfinite(h["distill/adversarial/div"]) for h in rec["history"])


@pytest.mark.parametrize("option", ["distill.adversarial.rounds", "distill.resample"])
def test_adversarial_rounds_need_acgkd_banks(tmp_path, tiny_root, tiny_teacher_dir, option):
    from gfkd.errors import StageError

    layout = RunLayout(tmp_path / "gen")
    randg = [*GEN, "generate.method=randg"]
    generate.run(resolve_config(None, randg), layout, "g", teacher_dir=tiny_teacher_dir)
    cfg = _cfg(tiny_root, tmp_path, "generate.method=randg", "distill.baselines=[]", "distill.seeds=1",
               f"{option}=true")
    with pytest.raises(StageError, match=f"{option} needs ACGKD banks"):
        distill.run(cfg, RunLayout(tmp_path / "r"), "k", teacher_dir=tiny_teacher_dir,
                    generate_dir=layout.stage_dir("generate"))
    acgkd_cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1", f"{option}=true")
    with pytest.raises(StageError, match="holds randg shards"):  # the config says acgkd, the shards say otherwise
        distill.run(acgkd_cfg, RunLayout(tmp_path / "r2"), "k", teacher_dir=tiny_teacher_dir,
                    generate_dir=layout.stage_dir("generate"))


def test_resample_redraws_every_epoch_without_generator_steps(tmp_path, tiny_root, tiny_teacher_dir, shard_dir,
                                                              monkeypatch):
    from gfkd.errors import ConfigError
    from gfkd.generators.rounds import AdversarialRounds

    cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1", "distill.resample=true")
    assert "generate" in cfg.stage_config("distill")  # the redraws read generate.*: it enters the cache key
    with pytest.raises(ConfigError, match="distill.resample and distill.adversarial.rounds"):
        _cfg(tiny_root, tmp_path, "distill.resample=true", "distill.adversarial.rounds=true")
    with pytest.raises(ConfigError, match="finalize=mode would redraw the same graphs"):
        _cfg(tiny_root, tmp_path, "distill.resample=true", "generate.acgkd.finalize=mode")
    assert cfg.distill.model_copy(update={"recipe": "plain"}).effective().resample is False
    calls: list[int] = []
    orig = AdversarialRounds.step
    monkeypatch.setattr(AdversarialRounds, "step", lambda self, s: calls.append(self.steps) or orig(self, s))
    layout = RunLayout(tmp_path / "resample")
    distill.run(cfg, layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    assert calls == [0, 0, 0]  # one redraw per epoch, no generator step
    rec = json.loads((layout.stage_dir("distill") / "students" / "pseudo-s0.result.json").read_text())
    assert rec["generator_steps"] == 0 and not any("distill/adversarial/div" in h for h in rec["history"])


@pytest.mark.parametrize("other", ["protocol.fold=1", "protocol.name=holdout"])
def test_a_teacher_of_another_fold_or_partition_is_refused(tmp_path, tiny_root, tiny_teacher_dir, shard_dir, other):
    from gfkd.errors import StageError

    with pytest.raises(StageError, match="another split"):  # this run's test graphs could be its training graphs
        distill.run(_cfg(tiny_root, tmp_path, other), RunLayout(tmp_path / "run"), "k", teacher_dir=tiny_teacher_dir,
                    generate_dir=shard_dir)


def test_students_do_not_depend_on_what_an_earlier_stage_left_in_the_process(tmp_path, tiny_root, tiny_teacher_dir,
                                                                             shard_dir):
    """A distill stage run right after generate (which flushes denormals) and one resumed in a fresh process used to
    train with different arithmetic; now the stage sets the switch itself, whatever an earlier stage left. The flag
    is what catches a revert: the tiny fixture makes no denormals, so its weights match either way (the measured case
    is PTC_MR in docs/pipeline.md)."""
    from gfkd.stages.common import flush_denormal_enabled

    cfg = _cfg(tiny_root, tmp_path, "distill.baselines=[]", "distill.seeds=1")
    weights = []
    try:
        for before in (False, True):
            torch.set_flush_denormal(before)
            layout = RunLayout(tmp_path / f"after-{before}")
            distill.run(cfg, layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
            assert flush_denormal_enabled()  # as generate leaves it: a fresh run's arithmetic
            weights.append(torch.load(layout.stage_dir("distill") / "students" / "pseudo-s0.pt",
                                      weights_only=True)["state_dict"])
    finally:
        torch.set_flush_denormal(False)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_auto_class_weights_are_balanced_on_featureless_sets_only(tmp_path, tiny_root, tiny_deg_teacher_dir):
    """acgkd.md §11: distill.class_weight = auto balances the teacher's predicted classes on featureless sets (degree
    features); on featureful ones it is none (the test above: its plain run is featureful and unweighted)."""
    layout = RunLayout(tmp_path / "deg")
    cfg = resolve_config(None, [*GEN, *FAST, "data.dataset=TINYDEG", f"data.root='{tiny_root}'", "data.download=false",
                                f"run.runs_dir='{tmp_path}'", "distill.student.layers=2", "distill.student.hidden=8",
                                "distill.baselines=[]", "distill.seeds=1", "distill.epochs=1"])
    generate.run(cfg, layout, "g", teacher_dir=tiny_deg_teacher_dir)
    runs = {}
    for weight in ("auto", "none"):
        out = RunLayout(tmp_path / weight)
        distill.run(cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"class_weight": weight})}), out,
                    weight, teacher_dir=tiny_deg_teacher_dir, generate_dir=layout.stage_dir("generate"))
        runs[weight] = json.loads((out.stage_dir("distill") / "results.json").read_text())["class_weights"]
    assert runs["none"] is None and runs["auto"] is not None and len(runs["auto"]) == 2


def test_what_the_stage_hands_the_loop_and_which_epoch_it_reports(tmp_path, tiny_root, tiny_teacher_dir, shard_dir,
                                                                  monkeypatch):
    """protocol.md §4-§5 and acgkd.md §11 at the stage (a mutation audit: each change below left every test passing):
    the data-free student trains `distill.epochs=auto` = 50 epochs on a union of banks with the curriculum and the
    class weights, and reports its last epoch; KD on real graphs trains 150 epochs
    with the plain recipe (fixed T = 2, no curriculum, no class weights) and reports its val-selected epoch. The loop
    is stubbed: its last state calls every graph class 1, its val-selected state class 0."""
    from gfkd.distillation import DistillResult

    calls = {}

    def stub(student, teacher, graphs, dc, epochs, seed, device, class_weights=None, curriculum_on=True, **kw):
        real = not curriculum_on
        calls["kd_real" if real else "pseudo"] = (dc, epochs, class_weights)
        state = student.state_dict()
        bias = [k for k, v in state.items() if k.endswith("bias") and v.shape == (2,)][-1]  # the head's
        vote = lambda c: {**state, bias: state[bias] + torch.tensor([100.0, 0.0] if c == 0 else [0.0, 100.0])}  # noqa: E731
        return DistillResult(last_state=vote(1), best_state=vote(0), best_epoch=0, history=[{}])

    monkeypatch.setattr(distill, "distill_student", stub)
    layout = RunLayout(tmp_path / "run")
    distill.run(_cfg(tiny_root, tmp_path, "distill.epochs=auto", "distill.seeds=1", "distill.class_weight=balanced"),
                layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=shard_dir)
    dc, epochs, weights = calls["pseudo"]
    assert epochs == 50 and weights is not None and dc.temperature.mode == "global"
    dc_real, epochs_real, weights_real = calls["kd_real"]
    assert epochs_real == 150 and weights_real is None
    assert (dc_real.temperature.mode, dc_real.temperature.value, dc_real.curriculum.pace, dc_real.class_weight,
            dc_real.feat_weight) == ("fixed", 2.0, "off", "none", 0.0)
    folder = layout.stage_dir("distill") / "students"
    pseudo = json.loads((folder / "pseudo-s0.result.json").read_text())
    kd_real = json.loads((folder / "kd_real-s0.result.json").read_text())
    assert set(pseudo["test_pred"]) == {1} and set(kd_real["test_pred"]) == {0}  # primary: last / val-selected
