"""OAD on pseudo-graphs (oad.md §6, §8, §10.10): the group stage trains, reports the three numbers from the last
epoch, repeats bitwise, never opens the real training split, and its ring is wired student k − 1 → D_k."""

import json
import math

import pytest
import torch
from torch_geometric.data import Batch

from gfkd.config import resolve_config
from gfkd.data import datasets
from gfkd.group.graph import normalized_adjacency
from gfkd.layout import RunLayout
from gfkd.losses.kd import calibrated_tau, mean_top_probability
from gfkd.stages import generate, group

GEN = ["generate.iterations=5", "generate.banks=1", "generate.batch_size=40", "generate.num_graphs=40"]


@pytest.fixture(scope="module")
def gen_dir(tiny_teacher_dir, tmp_path_factory):
    layout = RunLayout(tmp_path_factory.mktemp("gen"))
    generate.run(resolve_config(None, GEN), layout, "g", teacher_dir=tiny_teacher_dir)
    return layout.stage_dir("generate")


def _cfg(tiny_root, tmp_path, *extra):
    return resolve_config(None, ["data.dataset=TINY", f"data.root='{tiny_root}'", "data.download=false",
                                 f"run.runs_dir='{tmp_path}'", "distill.student.layers=2", "distill.student.hidden=8",
                                 "group.graph.warmup_epochs=2", "group.graph.epochs=2", "group.graph.students=3",
                                 "group.graph.batch_size=16", *extra])


@pytest.mark.parametrize("student", ["widened", "plain"])
def test_group_stage_reports_the_three_numbers_and_repeats_bitwise(tmp_path, tiny_root, tiny_teacher_dir, gen_dir,
                                                                   student):
    outs = []
    for name in ("a", "b"):
        layout = RunLayout(tmp_path / name)
        out = group.run(_cfg(tiny_root, tmp_path, f"group.graph.student={student}"), layout, "k",
                        teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
        outs.append((out, layout))
    m = outs[0][0].manifest.metrics
    for key in ("group/test/acc_mean", "group/test/acc_picked", "group/test/acc_ensemble",
                "group/test/acc_mean_val_selected", "group/pick/beat_mean"):
        assert key in m
    assert not any("max" in k or "best_test" in k for k in m)  # no student chosen on test
    res = [json.loads((lay.stage_dir("group") / "results.json").read_text()) for _, lay in outs]
    assert res[0]["spec"]["kind"] == student
    assert res[0]["numbers"] == res[1]["numbers"] and len(res[0]["history"]) == 4
    for k in range(3):
        a = torch.load(outs[0][1].stage_dir("group") / "students" / f"student-{k}.pt", weights_only=True)
        b = torch.load(outs[1][1].stage_dir("group") / "students" / f"student-{k}.pt", weights_only=True)
        assert all(torch.equal(a["state_dict"][p], b["state_dict"][p]) for p in a["state_dict"])
    n = res[0]["numbers"]
    accs = [n[f"acc_student{k}"] for k in range(3)]
    assert n["acc_mean"] == pytest.approx(sum(accs) / 3)
    assert n["acc_picked"] == accs[int(n["picked_student"])]


@pytest.mark.parametrize("method", ["oad", "independent", "dml", "kdcl", "oad_local"])
def test_every_method_runs(tmp_path, tiny_root, tiny_teacher_dir, gen_dir, method):
    out = group.run(_cfg(tiny_root, tmp_path, f"group.graph.method={method}", "group.graph.local_level=graph"),
                    RunLayout(tmp_path / "r"), "k", teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    hist = json.loads((RunLayout(tmp_path / "r").stage_dir("group") / "results.json").read_text())["history"]
    terms = {k.rsplit("/", 1)[1] for h in hist[2:] for k in h if "/train/" in k}
    expect = {"oad": {"adv", "global"}, "independent": set(), "dml": {"dml"}, "kdcl": {"kdcl"}, "oad_local": {"adv"}}
    assert expect[method] <= terms and ("global" in terms) == (method == "oad") and ("adv" in terms) == (
        method in ("oad", "oad_local"))
    assert not {"adv", "global", "dml", "kdcl"} & {k.rsplit("/", 1)[1] for k in hist[0] if "/train/" in k}  # warm-up
    assert out.status == "ran"


def test_the_discriminators_lr_decays_with_the_students(tmp_path, tiny_root, tiny_teacher_dir, gen_dir, monkeypatch):
    """oad.md §3, §4: D_k's Adam lr is the students' lr, which decays linearly to 0 over W + E on pseudo-graphs."""
    import gfkd.group.graph as graph_mod

    lrs, real_ring = set(), graph_mod.ring_step

    def ring_spy(d_opts, h, score, d_loss_scale):
        lrs.update(round(d.param_groups[0]["lr"], 12) for d in d_opts)
        return real_ring(d_opts, h, score, d_loss_scale)

    monkeypatch.setattr(graph_mod, "ring_step", ring_spy)
    group.run(_cfg(tiny_root, tmp_path, "group.graph.method=oad"), RunLayout(tmp_path / "r"), "k",
              teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    assert lrs == {0.005, 0.0025}  # epochs 3 and 4 of W + E = 4 at lr 0.01: 0.01·(1 − 2/4), 0.01·(1 − 3/4)


@pytest.mark.parametrize("level", ["node", "graph"])
def test_the_stage_feeds_the_ring_student_k_s_embeddings_and_pairs_d_k_with_its_optimiser(tmp_path, tiny_root,
                                                                                          tiny_teacher_dir, gen_dir,
                                                                                          monkeypatch, level):
    """gfkd.group.ring.ring_step's own ring is tested in test_ring.py; here: what the stage hands it, every step."""
    import gfkd.group.graph as graph_mod

    seen = {"students": None, "calls": 0, "train_steps": 0}
    real_outputs, real_ring = graph_mod.student_outputs, graph_mod.ring_step

    def outputs_spy(students, batch):
        seen["students"] = students
        seen["train_steps"] += students.training
        return real_outputs(students, batch)

    def ring_spy(d_opts, h, score, d_loss_scale):
        students = seen["students"]
        assert len(h) == len(d_opts) == len(students) == 3
        for k in range(3):  # h[k] has a graph to student k only; score(k, ·) has a graph to D_k's parameters only
            for j in range(3):
                trained = [p for p in students[j].parameters() if p.requires_grad]  # widened: the head is frozen
                g_h = torch.autograd.grad(h[k].sum(), trained, allow_unused=True, retain_graph=True)
                assert any(g is not None and g.abs().max() > 0 for g in g_h) == (j == k)
                d_params = [p for group_ in d_opts[j].param_groups for p in group_["params"]]
                g_d = torch.autograd.grad(score(k, h[k].detach()).sum(), d_params, allow_unused=True)
                assert any(g is not None and g.abs().max() > 0 for g in g_d) == (j == k)
        seen["calls"] += 1
        return real_ring(d_opts, h, score, d_loss_scale)

    monkeypatch.setattr(graph_mod, "student_outputs", outputs_spy)
    monkeypatch.setattr(graph_mod, "ring_step", ring_spy)
    group.run(_cfg(tiny_root, tmp_path, "group.graph.method=oad", f"group.graph.local_level={level}"),
              RunLayout(tmp_path / "r"), "k", teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    assert seen["calls"] > 0 and 2 * seen["calls"] == seen["train_steps"]  # every step of epochs 3-4, none before


@pytest.mark.parametrize("level", ["node", "graph"])
def test_unit_d_input_shows_the_discriminators_each_nodes_direction_only(tmp_path, tiny_root, tiny_teacher_dir,
                                                                         gen_dir, monkeypatch, level):
    """group.graph.d_input=unit: D_k scores h/‖h‖, so embeddings that differ only in length score the same; raw: not."""
    import gfkd.group.graph as graph_mod

    real_ring, checked = graph_mod.ring_step, []

    def ring_spy(d_opts, h, score, d_loss_scale):
        x = h[0].detach()
        checked.append(torch.allclose(score(0, x), score(0, 3 * x), atol=1e-5))
        return real_ring(d_opts, h, score, d_loss_scale)

    monkeypatch.setattr(graph_mod, "ring_step", ring_spy)
    for d_input in ("unit", "raw"):
        group.run(_cfg(tiny_root, tmp_path, "group.graph.method=oad", f"group.graph.local_level={level}",
                       f"group.graph.d_input={d_input}"), RunLayout(tmp_path / d_input), "k",
                  teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
        assert checked and all(checked) == (d_input == "unit") and any(checked) == (d_input == "unit")
        checked.clear()


def test_each_epoch_records_the_students_embedding_lengths(tmp_path, tiny_root, tiny_teacher_dir, gen_dir,
                                                            monkeypatch):
    """group/train/emb_norm: the mean over students of each one's mean node-embedding length ‖h_v‖ in a training
    batch, averaged over the epoch's batches by graphs; emb_norm_ratio: the longest student's over the shortest's."""
    import gfkd.group.graph as graph_mod

    real, seen = graph_mod.student_outputs, []

    def spy(students, b):
        z, h = real(students, b)
        if students.training:  # the training batches, not the per-epoch scoring
            seen.append((b.num_graphs, torch.stack([hk.detach().norm(dim=-1).mean() for hk in h])))
        return z, h

    monkeypatch.setattr(graph_mod, "student_outputs", spy)
    layout = RunLayout(tmp_path / "r")
    group.run(_cfg(tiny_root, tmp_path, "group.graph.method=oad"), layout, "k", teacher_dir=tiny_teacher_dir,
              generate_dir=gen_dir)
    hist = json.loads((layout.stage_dir("group") / "results.json").read_text())["history"]
    per_epoch = len(seen) // len(hist)
    assert per_epoch >= 2 and len(seen) == per_epoch * len(hist)  # several batches: the weighting is exercised
    for e, record in enumerate(hist):
        batches = seen[e * per_epoch:(e + 1) * per_epoch]
        n = sum(nb for nb, _ in batches)
        assert record["group/train/emb_norm"] == pytest.approx(sum(nb * float(v.mean()) for nb, v in batches) / n)
        assert record["group/train/emb_norm_ratio"] == pytest.approx(
            sum(nb * float(v.max() / v.min()) for nb, v in batches) / n)
        assert record["group/train/emb_norm_ratio"] >= 1


def test_the_evaluation_after_each_epoch_feeds_nothing_back(tmp_path, tiny_root, tiny_teacher_dir, gen_dir,
                                                             monkeypatch):
    """protocol.md §8.3: the students trained beside the per-epoch scoring on the real validation and test graphs
    are bitwise those trained beside a stub that never runs them."""
    import gfkd.group.graph as graph_mod

    def students(name):
        layout = RunLayout(tmp_path / name)
        group.run(_cfg(tiny_root, tmp_path, "group.graph.method=oad"), layout, "k", teacher_dir=tiny_teacher_dir,
                  generate_dir=gen_dir)
        return [torch.load(layout.stage_dir("group") / "students" / f"student-{k}.pt", weights_only=True)["state_dict"]
                for k in range(3)]

    scored = students("scored")
    calls = []

    def stub(students_, loader, device):
        calls.append(1)
        y = torch.cat([b.y.view(-1) for b in loader])
        return torch.zeros(len(students_), len(y), 2), y

    monkeypatch.setattr(graph_mod, "_eval", stub)
    blind = students("blind")
    assert calls and all(torch.equal(a[p], b[p]) for a, b in zip(scored, blind) for p in a)


def test_group_never_opens_the_training_split(tmp_path, tiny_root, tiny_teacher_dir, gen_dir, monkeypatch):
    from gfkd.data.splits import make_split

    labels = datasets.load_tu("TINY", tiny_root, tmp_path / "c", allow_download=False).labels
    train = set(make_split(labels, "cv10", 0, 0, True).train.tolist())
    requested: list[int] = []
    orig = datasets.GraphDataset.subset
    monkeypatch.setattr(datasets.GraphDataset, "subset", lambda self, idx: requested.extend(map(int, idx)) or orig(self, idx))
    group.run(_cfg(tiny_root, tmp_path), RunLayout(tmp_path / "r"), "k", teacher_dir=tiny_teacher_dir,
              generate_dir=gen_dir)
    assert requested and not train & set(requested)


def test_normalized_adjacency_matches_gcn_normalisation():
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    a = normalized_adjacency(ei, 4).to_dense()
    dense = torch.zeros(4, 4)
    dense[ei[1], ei[0]] = 1
    dense += torch.eye(4)
    d = dense.sum(1).rsqrt()
    assert torch.allclose(a, d[:, None] * dense * d[None, :])
    assert a[3, 3] == 1.0  # an isolated node keeps its self-loop


def test_widened_group_students_keep_the_teachers_classifier(tmp_path, tiny_root, tiny_teacher_dir, gen_dir):
    from gfkd.io.checkpoint import load_checkpoint

    layout = RunLayout(tmp_path / "w")
    group.run(_cfg(tiny_root, tmp_path, "group.graph.student=widened", "group.graph.method=oad"), layout, "k",
              teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    res = json.loads((layout.stage_dir("group") / "results.json").read_text())
    assert res["spec"]["kind"] == "widened"
    assert {"feat", "adv", "global"} <= {k.rsplit("/", 1)[1] for k in res["history"][-1] if "/train/" in k}
    t_state, _, _ = load_checkpoint(tiny_teacher_dir / "teacher.pt")
    head = {k.removeprefix("classifier."): v for k, v in t_state.items() if k.startswith("classifier.")}
    for k in range(3):
        state, _, _ = load_checkpoint(layout.stage_dir("group") / "students" / f"student-{k}.pt")
        assert head and all(torch.equal(state[f"head.{p}"], v) for p, v in head.items())  # frozen, reused


def test_a_teacher_of_another_split_is_refused(tmp_path, tiny_root, tiny_teacher_dir, gen_dir):
    from gfkd.errors import StageError

    with pytest.raises(StageError, match="another split"):  # its training graphs could be this fold's test graphs
        group.run(_cfg(tiny_root, tmp_path, "protocol.fold=1"), RunLayout(tmp_path / "r"), "k",
                  teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)


def _training_batches(monkeypatch, train_batch: int) -> list[list]:
    """Per training epoch, the graphs its batches held (only the training loaders use group.graph.batch_size)."""
    from gfkd.group import graph as graph_mod

    epochs: list[list] = []
    orig = graph_mod.DataLoader

    def spy(data, batch_size=1, **kw):
        if batch_size == train_batch:
            epochs.append(list(data))
        return orig(data, batch_size=batch_size, **kw)

    monkeypatch.setattr(graph_mod, "DataLoader", spy)
    return epochs


def test_inherited_curriculum_trains_on_the_easiest_graphs_first(tmp_path, tiny_root, tiny_teacher_dir, gen_dir,
                                                                 monkeypatch):
    epochs = _training_batches(monkeypatch, 16)
    layout = RunLayout(tmp_path / "c")
    group.run(_cfg(tiny_root, tmp_path, "group.graph.curriculum=inherit", "distill.curriculum.q0=0.3"), layout, "k",
              teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    assert len(epochs) == 4  # W 2 + E 2; E_c = ⌈0.5·4⌉ = 2: q = 0.3, 0.65, 1, 1
    everything = sorted(epochs[-1], key=lambda g: (float(g.difficulty), int(g.graph_id)))
    m = len(everything)
    for e, q in enumerate([0.3, 0.65, 1.0, 1.0]):
        k = -(-round(q * m * 1e6) // 1_000_000)  # ⌈q·M⌉
        assert sorted(int(g.graph_id) for g in epochs[e]) == sorted(int(g.graph_id) for g in everything[:k])
    hist = json.loads((layout.stage_dir("group") / "results.json").read_text())["history"]
    assert [h["group/train/fraction"] for h in hist] == pytest.approx([0.3, 0.65, 1.0, 1.0])
    assert len(epochs[0]) < m  # the hard graphs wait


def test_without_curriculum_every_epoch_sees_every_training_graph(tmp_path, tiny_root, tiny_teacher_dir, gen_dir,
                                                                  monkeypatch):
    epochs = _training_batches(monkeypatch, 16)
    layout = RunLayout(tmp_path / "n")
    group.run(_cfg(tiny_root, tmp_path), layout, "k", teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    assert len(epochs) == 4 and len({len(e) for e in epochs}) == 1
    assert "group/train/fraction" not in json.loads((layout.stage_dir("group") / "results.json").read_text())["history"][0]


def test_real_data_reference_trains_on_the_real_training_graphs_with_true_labels(tmp_path, tiny_root,
                                                                                 tiny_teacher_dir, gen_dir,
                                                                                 monkeypatch):
    from gfkd.data.splits import make_split
    from gfkd.io.checkpoint import load_checkpoint
    from gfkd.stages.teacher import load_teacher

    ds = datasets.load_tu("TINY", tiny_root, tmp_path / "c", allow_download=False)
    split = make_split(ds.labels, "cv10", 0, 0, True)
    from types import SimpleNamespace

    from gfkd.group import graph as graph_mod

    epochs = _training_batches(monkeypatch, 16)
    sup_targets = []  # the CE targets of the training steps (the validation CE takes no gradient)

    def ce(z, y, *a, **kw):
        if z.requires_grad:
            sup_targets.append(y.clone())
        return torch.nn.functional.cross_entropy(z, y, *a, **kw)

    monkeypatch.setattr(graph_mod, "F", SimpleNamespace(**{**vars(torch.nn.functional), "cross_entropy": ce}))
    orig = group.with_teacher_logits

    def flipped(*a, **kw):  # the teacher fits TINY's training graphs: flip its logits so argmax ≠ y everywhere
        out = orig(*a, **kw)
        for g in out:
            g.teacher_logits = g.teacher_logits.flip(-1)
        return out

    monkeypatch.setattr(group, "with_teacher_logits", flipped)
    results = []
    train = group.train_graph_group

    def marked(*a, **kw):  # mark the val-selected states, to see which states the stage saves
        res = train(*a, **kw)
        res.selected_states = [{k: v + 1 if v.is_floating_point() else v for k, v in st.items()}
                               for st in res.selected_states]
        results.append(res)
        return res

    monkeypatch.setattr(group, "train_graph_group", marked)
    layout = RunLayout(tmp_path / "real")
    out = group.run(_cfg(tiny_root, tmp_path, "group.graph.data=real"), layout, "k", teacher_dir=tiny_teacher_dir,
                    generate_dir=gen_dir)
    res = json.loads((layout.stage_dir("group") / "results.json").read_text())
    assert res["data"] == "real" and res["train_graphs"] == len(split.train) and out.manifest.info["data"] == "real"
    assert res["label_source"] == "target" and res["selection"] == "val"  # a with-data row: val-selected
    assert res["numbers"]["val_selected_epoch"] >= 2 and "acc_ensemble_last" in res["numbers"]
    assert res["numbers"]["acc_ensemble"] == results[0].numbers["acc_ensemble_val_selected"]
    saved, _, _ = load_checkpoint(layout.stage_dir("group") / "students" / "student-0.pt")
    assert all(torch.equal(saved[k], v) for k, v in results[0].selected_states[0].items())  # the val-selected epoch
    seen = epochs[0]
    y_true = torch.tensor([int(g.y) for g in seen])
    y_teacher = torch.cat([g.teacher_logits.view(1, -1) for g in seen]).argmax(-1)
    assert (y_true != y_teacher).all()  # the two label sources disagree on every graph
    n_batches = -(-len(seen) // 16)
    assert torch.equal(torch.cat(sup_targets[:3 * n_batches:3]), y_true)  # K = 3 CE terms per batch, on ŷ = y
    assert len(seen) == len(split.train) - -(-len(split.train) // 10)  # all but the 10 % pick hold-out
    train = ds.subset(split.train)
    teacher, _, _ = load_teacher(tiny_teacher_dir / "teacher.pt")
    for g in seen:  # each is a real training graph, with its true label and the teacher's logits on it
        real = train[int(g.graph_id)]
        assert torch.equal(g.x, real.x) and torch.equal(g.edge_index, real.edge_index) and int(g.y) == int(real.y)
    b = Batch.from_data_list(seen[:8])
    z = teacher.eval()(b.x, b.edge_index, b.batch, b.num_graphs)
    assert torch.allclose(b.teacher_logits.view_as(z).flip(-1), z, atol=1e-5)


@pytest.mark.parametrize("extra, match", [
    (["group.graph.curriculum=inherit", "group.graph.data=real"], "set group.graph.curriculum=off"),
    (["group.graph.curriculum=inherit", "distill.curriculum.measure=student_kl"], "depends on one student"),
    (["group.graph.curriculum=inherit", "distill.curriculum.pace=off"], "inherits no curriculum"),
    (["group.graph.curriculum=inherit", "distill.recipe=plain"], "inherits no curriculum"),
])
def test_curriculum_settings_that_cannot_hold_are_refused(tiny_root, tmp_path, extra, match):
    from gfkd.config import ConfigError

    with pytest.raises(ConfigError, match=match):
        _cfg(tiny_root, tmp_path, *extra)


def test_the_inherited_curriculum_enters_the_group_cache_key(tiny_root, tmp_path):
    from tasks.cache import stage_key

    def key(*extra):
        return stage_key(_cfg(tiny_root, tmp_path, *extra), "group", ("t", "g"))

    inherit = ["group.graph.curriculum=inherit"]
    assert key(*inherit) != key(*inherit, "distill.curriculum.q0=0.6")
    assert key(*inherit) != key(*inherit, "distill.curriculum.measure=size")
    assert key() == key("distill.curriculum.q0=0.6")  # without the curriculum the group does not read it


def test_inherited_anchor_temperature_is_learnt_per_student_and_fixed_mode_changes_nothing(tmp_path, tiny_root,
                                                                                          tiny_teacher_dir, gen_dir):
    """anchor_temperature=inherit gives each student the distill stage's temperature: adversarial by default (τ
    leaves τ_init once its lr ramps in, logged as group/train/tau); under distill.temperature.mode=fixed it is
    bitwise the fixed anchor at the same τ."""
    def run(name, *extra):
        layout = RunLayout(tmp_path / name)
        group.run(_cfg(tiny_root, tmp_path, "group.graph.epochs=4", *extra), layout, "k",
                  teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
        return json.loads((layout.stage_dir("group") / "results.json").read_text())

    fixed = run("fixed", "group.graph.anchor_tau=3")
    same = run("same", "group.graph.anchor_temperature=inherit", "distill.temperature.mode=fixed",
               "distill.temperature.value=3")
    assert same["numbers"] == fixed["numbers"] and same["per_student"] == fixed["per_student"]
    adv = run("adv", "group.graph.anchor_temperature=inherit", "distill.temperature.ramp_epochs=1",
              "distill.temperature.lr=0.5")
    taus = [h["group/train/tau"] for h in adv["history"]]
    assert taus[0] == pytest.approx(2.0, abs=1e-6)  # τ_init, its lr is 0 in epoch 0
    assert abs(taus[-1] - 2.0) > 0.05 and adv["anchor_temperature"]["mode"] == "global"
    assert "group/train/tau" not in fixed["history"][0]


def test_the_inherited_anchor_temperature_enters_the_cache_key_and_needs_the_anchor(tiny_root, tmp_path):
    from gfkd.config import ConfigError
    from tasks.cache import stage_key

    def key(*extra):
        return stage_key(_cfg(tiny_root, tmp_path, *extra), "group", ("t", "g"))

    inherit = ["group.graph.anchor_temperature=inherit"]
    assert key(*inherit) != key() and key(*inherit) != key(*inherit, "distill.temperature.lr=0.1")
    assert key() == key("distill.temperature.lr=0.1")  # a fixed anchor does not read it
    with pytest.raises(ConfigError, match="teacher_anchor=0 turns off"):
        _cfg(tiny_root, tmp_path, *inherit, "group.graph.teacher_anchor=0")


def test_the_anchor_ablation_needs_the_hard_label_term(tiny_root, tmp_path):
    """oad.md §6's λ_T = 0 ablation trains on the CE to the hard labels; under the default sup_weight = 0 it would
    train on nothing (the loss 0, the students their initial weights), so it is refused."""
    from gfkd.config import ConfigError

    with pytest.raises(ConfigError, match="teacher_anchor=0 with group.graph.sup_weight=0 .* set group.graph.sup_weight=1"):
        _cfg(tiny_root, tmp_path, "group.graph.teacher_anchor=0")
    cfg = _cfg(tiny_root, tmp_path, "group.graph.teacher_anchor=0", "group.graph.sup_weight=1")
    assert (cfg.group.graph.teacher_anchor, cfg.group.graph.sup_weight) == (0, 1)


def test_the_calibrated_anchor_is_the_fixed_anchor_at_the_tau_read_off_the_teachers_logits(tmp_path, tiny_root,
                                                                                           tiny_teacher_dir, gen_dir):
    """anchor_temperature=calibrated fixes one τ before training (logged, saved), and trains bitwise as the fixed
    anchor at that τ; a level no τ in [anchor_tau, 10] reaches gives 10."""
    from gfkd.config import ConfigError
    from tasks.cache import stage_key

    def run(name, *extra):
        layout = RunLayout(tmp_path / name)
        out = group.run(_cfg(tiny_root, tmp_path, *extra), layout, "k", teacher_dir=tiny_teacher_dir,
                        generate_dir=gen_dir)
        return out.manifest.metrics, json.loads((layout.stage_dir("group") / "results.json").read_text())

    graphs = torch.cat([g.teacher_logits.view(1, -1) for g in group.load_pseudo_graphs(gen_dir / "shards")])
    level = mean_top_probability(graphs, 4.0)  # a level that some τ between 2 and 10 reaches on these graphs
    cal_metrics, cal = run("cal", "group.graph.anchor_temperature=calibrated", f"group.graph.anchor_confidence={level!r}")
    tau = cal["anchor_temperature"]
    assert cal_metrics["group/train/anchor_tau"] == tau and 2.0 < tau < 10.0
    cfg = _cfg(tiny_root, tmp_path)
    perm = torch.randperm(len(graphs), generator=torch.Generator().manual_seed(cfg.split_seed))
    n_hold = math.ceil(cfg.group.graph.pick_holdout * len(graphs))  # the pick hold-out, left out of the reading
    assert tau == calibrated_tau(graphs[perm[n_hold:]], level, 2.0, 10.0) != calibrated_tau(graphs, level, 2.0, 10.0)
    _, fixed = run("fixed", f"group.graph.anchor_tau={tau!r}")
    assert fixed["numbers"] == cal["numbers"] and fixed["per_student"] == cal["per_student"]
    assert "group/train/anchor_tau" not in run("plain")[0]
    assert run("cold", "group.graph.anchor_temperature=calibrated", "group.graph.anchor_confidence=0.5000001")[1][
        "anchor_temperature"] == 10.0

    def key(*extra):
        return stage_key(_cfg(tiny_root, tmp_path, *extra), "group", ("t", "g"))

    cal = ["group.graph.anchor_temperature=calibrated"]
    assert key(*cal) != key() and key(*cal) != key(*cal, "group.graph.anchor_confidence=0.8")
    with pytest.raises(ConfigError, match="teacher_anchor=0 turns off"):
        _cfg(tiny_root, tmp_path, *cal, "group.graph.teacher_anchor=0")
    with pytest.raises(ConfigError, match="anchor_tau <= 10"):
        _cfg(tiny_root, tmp_path, *cal, "group.graph.anchor_tau=12")


def test_a_bank_of_one_pseudo_graph_trains_on_it_and_picks_no_student(tmp_path, tiny_root, tiny_teacher_dir):
    """The pick hold-out never takes the last training graph: generate.num_graphs=1 used to leave none and end in a
    KeyError ('group/train/loss') found by exploring the CLI."""
    layout = RunLayout(tmp_path / "one")
    gen = ["generate.iterations=2", "generate.banks=1", "generate.batch_size=1", "generate.num_graphs=1"]
    generate.run(resolve_config(None, gen), layout, "g", teacher_dir=tiny_teacher_dir)
    out = group.run(_cfg(tiny_root, tmp_path, *gen), layout, "k", teacher_dir=tiny_teacher_dir,
                    generate_dir=layout.stage_dir("generate"))
    res = json.loads((layout.stage_dir("group") / "results.json").read_text())
    assert out.status == "ran" and all("group/train/loss" in h for h in res["history"])
    assert "acc_picked" not in res["numbers"]  # nothing was held out to pick on


def test_the_numbers_say_whether_the_picked_student_and_the_ensemble_collapsed(monkeypatch):
    """`collapsed` counts students predicting one class for ≥ 95 % of the test graphs; the picked student and the
    ensemble get their own 0/1 (the benchmark table used to print 0 for them unmeasured)."""
    from torch_geometric.data import Data

    from gfkd.group import graph

    y = torch.tensor([0] * 10 + [1] * 10)
    one_hot = lambda pred: torch.nn.functional.one_hot(pred, 2).float() * 5  # confident logits  # noqa: E731
    collapsed0 = one_hot(torch.zeros(20, dtype=torch.long))  # student 0: class 0 on every graph
    right = one_hot(y)  # student 1: right on every graph
    near = one_hot(torch.tensor([0] * 19 + [1]))  # student 2: class 0 on 19 of 20 graphs (0.95: collapsed)
    test = torch.stack([collapsed0, right, near])  # [K, n, C]; the ensemble calls class 0 wherever two say so
    hold = [Data(x=torch.zeros(1, 1)) for _ in range(4)]
    hold_logits = torch.stack([one_hot(torch.zeros(4, dtype=torch.long)), one_hot(torch.ones(4, dtype=torch.long)),
                               one_hot(torch.ones(4, dtype=torch.long))])  # only student 0 agrees with ŷ = 0
    calls = iter([(test, y), (hold_logits, torch.zeros(4, dtype=torch.long))])
    monkeypatch.setattr(graph, "_eval", lambda *a: next(calls))
    n = graph._numbers(None, hold, lambda b: torch.zeros(b.num_graphs, dtype=torch.long), None, torch.device("cpu"), 4)
    assert n["collapsed"] == 2 and n["picked_student"] == 0 and n["collapsed_picked"] == 1
    assert n["acc_ensemble"] == pytest.approx(0.55) and n["collapsed_ensemble"] == 1  # class 0 on 19 of 20 graphs
    test[2] = right  # two right students outvote the collapsed one
    calls = iter([(test, y)])
    n = graph._numbers(None, [], None, None, torch.device("cpu"), 4)
    assert n["collapsed"] == 1 and n["collapsed_ensemble"] == 0 and "collapsed_picked" not in n


def test_the_graph_level_discriminator_scores_mean_pooled_embeddings():
    """oad.md §6 local_level=graph: D_k = MLP(d → d_D → 1) on sum-pooled embeddings divided by n_g (the mean)."""
    from gfkd.group.graph import GraphDiscriminator

    torch.manual_seed(0)
    d = GraphDiscriminator(3, 4)
    h, batch = torch.randn(5, 3), torch.tensor([0, 0, 0, 1, 1])
    pooled = torch.stack([h[:3].sum(0) / 3, h[3:].sum(0) / 2])
    torch.testing.assert_close(d(h, batch, 2), d.mlp(pooled).squeeze(-1))


def test_the_students_optimiser_holds_no_discriminator_parameter(tmp_path, tiny_root, tiny_teacher_dir, gen_dir,
                                                                monkeypatch):
    """oad.md §4, §10.3 on pseudo-graphs: the students' Adam holds the K students only (the student step leaves every
    D_k unchanged), and each D_k's Adam holds D_k only."""
    import gfkd.group.graph as graph_mod

    made, seen = [], {}

    class Recording(torch.optim.Adam):
        def __init__(self, params, **kw):
            params = list(params)
            made.append({id(p) for p in params})
            super().__init__(params, **kw)

    real_outputs, real_ring = graph_mod.student_outputs, graph_mod.ring_step

    def outputs_spy(students, batch):
        seen["students"] = {id(p) for p in students.parameters()}
        return real_outputs(students, batch)

    def ring_spy(d_opts, h, score, d_loss_scale):
        seen["discs"] = [{id(p) for g in d.param_groups for p in g["params"]} for d in d_opts]
        return real_ring(d_opts, h, score, d_loss_scale)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    monkeypatch.setattr(graph_mod, "student_outputs", outputs_spy)
    monkeypatch.setattr(graph_mod, "ring_step", ring_spy)
    group.run(_cfg(tiny_root, tmp_path, "group.graph.method=oad"), RunLayout(tmp_path / "r"), "k",
              teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    assert made[0] == seen["students"] and len(made) == 1 + len(seen["discs"])
    assert made[1:] == seen["discs"] and all(not (d & seen["students"]) for d in seen["discs"])


@pytest.mark.parametrize("source", ["teacher_argmax", "target"])
def test_the_hard_labels_are_the_teachers_argmax_by_default(tmp_path, tiny_root, tiny_teacher_dir, gen_dir,
                                                            monkeypatch, source):
    """oad.md §6: ŷ_g of the CE term = the teacher's argmax [default] or the generation target (label_source)."""
    import gfkd.group.graph as graph_mod

    batches, targets = [], []
    real_outputs, real_ce = graph_mod.student_outputs, graph_mod.F.cross_entropy

    def outputs_spy(students, batch):
        batches.append(batch if students.training else None)  # None: an evaluation on real graphs
        return real_outputs(students, batch)

    def ce_spy(logits, target, *args, **kw):
        if batches and batches[-1] is not None:
            targets.append((batches[-1], target.clone()))
        return real_ce(logits, target, *args, **kw)

    monkeypatch.setattr(graph_mod, "student_outputs", outputs_spy)
    monkeypatch.setattr(graph_mod.F, "cross_entropy", ce_spy)
    extra = [] if source == "teacher_argmax" else ["group.graph.label_source=target"]
    group.run(_cfg(tiny_root, tmp_path, "group.graph.sup_weight=1", *extra), RunLayout(tmp_path / "r"), "k",
              teacher_dir=tiny_teacher_dir, generate_dir=gen_dir)
    differ = False
    for b, target in targets:
        argmax, y = b.teacher_logits.view(b.num_graphs, -1).argmax(-1), b.y.view(-1)
        assert torch.equal(target, argmax if source == "teacher_argmax" else y)
        differ |= not torch.equal(argmax, y)
    assert targets and differ  # the bank has graphs where the two label sources disagree, so the test can tell them apart


def test_the_teacher_anchor_weighs_in_in_both_phases(tmp_path, tiny_root, tiny_teacher_dir, gen_dir):
    """oad.md §6: λ_T·τ²·KL(p_T^τ ‖ p_k^τ) is added to every student in the warm-up and in distillation."""
    group.run(_cfg(tiny_root, tmp_path), RunLayout(tmp_path / "r"), "k", teacher_dir=tiny_teacher_dir,
              generate_dir=gen_dir)
    hist = json.loads((RunLayout(tmp_path / "r").stage_dir("group") / "results.json").read_text())["history"]
    assert len(hist) == 4  # W = 2, E = 2
    for e, h in enumerate(hist):  # the epoch's loss is its terms weighed as the defaults say (sup_weight 0, λ's 1)
        t = {k.rsplit("/", 1)[1]: v for k, v in h.items() if "/train/" in k}
        assert t["anchor"] > 0 and ("global" in t) == (e >= 2)
        assert t["loss"] == pytest.approx(t["anchor"] + t["feat"] + t.get("global", 0.0), rel=1e-5)
