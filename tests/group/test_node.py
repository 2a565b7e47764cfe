"""The node-level group loop: ring gradients, step order, warm-up, smoke runs (oad.md §10 items 1, 3, 4, 10)."""

import dataclasses

import pytest
import torch

from gfkd.config import resolve_config
from gfkd.group.node import (GroupSettings, build_models, forward_all, group_loss, ring_l2, ring_step,
                             settings_from_config, train_group)
from gfkd.losses import group as L

TINY = GroupSettings(students=3, warmup_epochs=2, epochs=2, hidden=4, heads=2, d_hidden=4)


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("backbone", ["gcn", "gat", "sage"])
def test_generator_loss_of_discriminator_k_reaches_student_k_minus_1_only(graph, backbone):
    s = dataclasses.replace(TINY, backbone=backbone, students=4)
    m = build_models(s, graph.num_features, graph.num_classes, seed=0)
    for k in range(4):
        m.students.zero_grad(set_to_none=True)
        _, h = forward_all(m, graph)
        L.generator_loss(m.discriminators[k](h[L.ring_fake(k, 4)], m.students[k].adjacency(graph))).backward()
        for j, student in enumerate(m.students):
            grads = [p.grad for p in student.parameters() if p.grad is not None]
            if j == (k - 1) % 4:
                assert grads and any(g.abs().max() > 0 for g in grads)
            else:
                assert all(g.abs().max() == 0 for g in grads)


def test_discriminator_steps_see_detached_inputs_and_precede_each_generator_loss(graph):
    m = build_models(TINY, graph.num_features, graph.num_classes, seed=0)
    d_opts = [torch.optim.Adam(d.parameters(), lr=0.01) for d in m.discriminators]
    seen: dict[int, list] = {k: [] for k in range(3)}
    for k, d in enumerate(m.discriminators):  # record D_k's weights and its input's grad flag at every call
        d.register_forward_pre_hook(lambda mod, args, k=k: seen[k].append((args[0].requires_grad, _params(mod))))
    before_students, before_d = _params(m.students), [_params(d) for d in m.discriminators]
    _, h = forward_all(m, graph)
    adv, _ = ring_step(m, d_opts, h, graph, d_loss_scale=1.0)
    assert _same(before_students, _params(m.students))  # D steps leave the students unchanged
    assert all(p.grad is None for p in m.students.parameters())  # real and fake inputs of L_D were detached
    for k in range(3):
        (real_g, w_real), (fake_g, w_fake), (gen_g, w_gen) = seen[k]
        assert (real_g, fake_g, gen_g) == (False, False, True)
        assert _same(w_real, before_d[k]) and _same(w_fake, before_d[k])
        assert not _same(w_gen, before_d[k])  # D_k was stepped before L_adv,k was evaluated
    after_d = [_params(d) for d in m.discriminators]
    opt = torch.optim.Adam(m.students.parameters(), lr=0.01)
    opt.zero_grad()
    adv.backward()
    opt.step()
    assert all(_same(a, _params(d)) for a, d in zip(after_d, m.discriminators))  # the student step leaves D alone
    assert not _same(before_students, _params(m.students))


def test_warm_up_leaves_discriminators_bitwise_unchanged_and_computes_no_group_term(graph):
    s = dataclasses.replace(TINY, warmup_epochs=3, epochs=1)
    m = build_models(s, graph.num_features, graph.num_classes, seed=0)
    d0, records = [_params(d) for d in m.discriminators], {}

    def on_epoch(epoch, record):
        records[epoch] = set(record)
        if epoch == s.warmup_epochs - 1:
            assert all(_same(a, _params(d)) for a, d in zip(d0, m.discriminators))

    train_group(graph, s, seed=0, on_epoch=on_epoch, models=m)
    assert all(records[e] == {"sup", "loss"} for e in range(3))
    assert {"global", "adv", "disc"} <= records[3]
    assert not all(_same(a, _params(d)) for a, d in zip(d0, m.discriminators))


@pytest.mark.parametrize("method,terms", [("oad", {"global", "adv"}), ("oad_global", {"global"}),
                                          ("oad_local", {"adv"}), ("dml", {"dml"}), ("kdcl", {"kdcl"}),
                                          ("independent", set()), ("oad_agnostic", {"global", "adv"}),
                                          ("oad_l2", {"global", "l2"})])
def test_each_method_adds_its_own_terms(graph, method, terms):
    s = dataclasses.replace(TINY, method=method)
    seen = set()
    train_group(graph, s, seed=0, on_epoch=lambda e, r: seen.update(r))
    assert seen & {"global", "adv", "dml", "kdcl", "l2"} == terms


@pytest.mark.parametrize("method,graph_aware", [("oad", True), ("oad_agnostic", False)])
def test_only_the_graph_agnostic_discriminators_score_without_the_adjacency(graph, method, graph_aware):
    s = dataclasses.replace(TINY, method=method)
    m = build_models(s, graph.num_features, graph.num_classes, seed=0)
    adjs = []
    for d in m.discriminators:
        d.register_forward_pre_hook(lambda mod, args: adjs.append(args[1]))
    train_group(graph, s, seed=0, models=m)
    assert len(adjs) == 3 * 3 * s.epochs  # real, fake and generator call per D per distillation step
    assert all((a is not None) == graph_aware for a in adjs)


@pytest.mark.parametrize("d_input", ["raw", "unit"])
def test_unit_d_input_hands_the_discriminators_unit_length_embeddings(graph, d_input):
    """group.d_input=unit: every D_k call sees rows of length 1 (h/‖h‖); raw: h as the student made it."""
    s = dataclasses.replace(TINY, method="oad", d_input=d_input)
    m = build_models(s, graph.num_features, graph.num_classes, seed=0)
    norms = []
    for d in m.discriminators:
        d.register_forward_pre_hook(lambda mod, args: norms.append(args[0].detach().norm(dim=-1)))
    train_group(graph, s, seed=0, models=m)
    assert len(norms) == 3 * 3 * s.epochs
    unit = [torch.allclose(n[n > 0], torch.ones_like(n[n > 0]), atol=1e-5) for n in norms]
    assert all(unit) if d_input == "unit" else not any(unit)


def test_l2_local_term_pulls_student_k_minus_1_towards_a_detached_student_k():
    h = [torch.randn(5, 3, generator=torch.Generator().manual_seed(k), requires_grad=True) for k in range(4)]
    loss = ring_l2(h)
    torch.testing.assert_close(loss, sum(((h[(k - 1) % 4] - h[k]) ** 2).sum(-1).mean() for k in range(4)).detach())
    loss.backward()
    for j in range(4):  # h_j is the pulled side of pair j + 1 only: ∂/∂h_j = 2 (h_j − h_{j+1}) / N
        torch.testing.assert_close(h[j].grad, 2 * (h[j] - h[(j + 1) % 4]).detach() / 5)


def test_l2_local_term_leaves_the_discriminators_untouched(graph):
    s = dataclasses.replace(TINY, method="oad_l2")
    m = build_models(s, graph.num_features, graph.num_classes, seed=0)
    d0 = [_params(d) for d in m.discriminators]
    train_group(graph, s, seed=0, models=m)
    assert all(_same(a, _params(d)) for a, d in zip(d0, m.discriminators))


def test_supervised_loss_sums_the_students_mean_ce(graph):
    z = torch.randn(3, graph.num_nodes, graph.num_classes, generator=torch.Generator().manual_seed(0))
    loss, terms = group_loss(TINY, z, graph, distill=False)
    tr = graph.train_mask
    expected = sum(torch.nn.functional.cross_entropy(z[k, tr], graph.y[tr]) for k in range(3))
    torch.testing.assert_close(loss, expected)
    assert set(terms) == {"sup"}


@pytest.mark.parametrize("backbone", ["gcn", "gat", "sage"])
@pytest.mark.parametrize("parity", ["clean", "reference"])
def test_smoke_run_reports_three_numbers_and_repeats_bitwise(graph, backbone, parity):
    cfg = resolve_config(None, [f"group.backbone={backbone}", f"group.parity={parity}", "group.students=3",
                                "group.warmup_epochs=2", "group.epochs=2", "group.hidden=4", "group.heads=2"])
    s = settings_from_config(cfg.group)
    a, b = train_group(graph, s, seed=3), train_group(graph, s, seed=3)
    for key in ("mean_students", "val_best_student", "ensemble"):
        assert 0.0 <= a.report[key] <= 1.0
    assert a.report["epoch"] in (2, 3) and a.val_acc.shape == (2, 3)
    assert a.losses == b.losses and (a.test_acc == b.test_acc).all() and a.report | {"wall_s": 0} == b.report | {"wall_s": 0}
    c = train_group(graph, s, seed=4)
    assert c.losses != a.losses


def test_parity_reference_resolves_every_switch_and_explicit_keys_win():
    s = settings_from_config(resolve_config(None, ["group.parity=reference", "group.gat_self_loops=true"]).group)
    assert (s.kl_scale, s.d_out_relu, s.gcn_student, s.sage_h, s.dml_stop_grad) == (
        "reference", True, "reference", "after_dropout", False)
    assert s.gat_self_loops is True
    clean = settings_from_config(resolve_config(None).group)
    assert (clean.kl_scale, clean.d_out_relu, clean.gcn_student, clean.gat_self_loops) == ("batchmean", False, "clean", True)


# The settings reach the loop: each test below failed on a code change that left the switch's own unit test passing.

def _z(graph, requires_grad=False):
    z = torch.randn(3, graph.num_nodes, graph.num_classes, generator=torch.Generator().manual_seed(0))
    return z.requires_grad_(requires_grad)


@pytest.mark.parametrize("global_on", ["train", "all"])
@pytest.mark.parametrize("kl_scale", ["batchmean", "reference"])
def test_global_term_is_read_on_the_chosen_nodes_at_the_chosen_scale(graph, global_on, kl_scale):
    """oad.md §2: V = the labelled nodes (global_on=train) or every node; kl_scale as set; T = 3."""
    s = dataclasses.replace(TINY, method="oad_global", global_on=global_on, kl_scale=kl_scale)
    z = _z(graph)
    _, terms = group_loss(s, z, graph, distill=True)
    zv = z[:, graph.train_mask] if global_on == "train" else z
    torch.testing.assert_close(terms["global"], L.global_kl(zv, 3.0, kl_scale).sum())
    moved = z.clone()
    moved[:, ~graph.train_mask] += torch.randn_like(moved[:, ~graph.train_mask])  # change the unlabelled nodes only
    same = torch.equal(group_loss(s, moved, graph, distill=True)[1]["global"], terms["global"])
    assert same is (global_on == "train")


@pytest.mark.parametrize("stop_grad", [True, False])
def test_dml_term_runs_at_temperature_one_with_the_chosen_peer_gradient(graph, stop_grad):
    """oad.md §7: DML at T = 1 over the labelled nodes; dml_stop_grad=false lets each KL reach the peer too."""
    s = dataclasses.replace(TINY, method="dml", dml_stop_grad=stop_grad)
    assert s.dml_temperature == 1.0
    z, ref = _z(graph, True), _z(graph, True)
    term = group_loss(s, z, graph, distill=True)[1]["dml"]
    expected = L.dml(ref[:, graph.train_mask], 1.0, stop_grad).sum()
    torch.testing.assert_close(term, expected)
    term.backward()
    expected.backward()
    torch.testing.assert_close(z.grad, ref.grad)
    flipped = _z(graph, True)  # the other switch: the same value, another gradient
    L.dml(flipped[:, graph.train_mask], 1.0, not stop_grad).sum().backward()
    assert not torch.allclose(flipped.grad, z.grad)


@pytest.mark.parametrize("out_relu", [False, True])
def test_d_out_relu_reaches_every_discriminator(graph, out_relu):
    """oad.md §3 d_out_relu: with it σ(D) ≥ ½ on every node, without it D calls some node fake."""
    m = build_models(dataclasses.replace(TINY, d_out_relu=out_relu), graph.num_features, graph.num_classes, seed=0)
    _, h = forward_all(m, graph)
    scores = torch.cat([d(torch.randn_like(h[k]) * 10, m.students[k].adjacency(graph))
                        for k, d in enumerate(m.discriminators)])
    assert bool((scores >= 0).all()) is out_relu


@pytest.mark.parametrize("gcn_student,layers", [("clean", 2), ("reference", 1)])
def test_the_reference_gcn_student_gets_the_one_layer_discriminator(graph, gcn_student, layers):
    """oad.md §9 gcn_student=reference: D = GCN(16 → 1) + ReLU; clean: 16 → 16 → 1."""
    s = dataclasses.replace(TINY, gcn_student=gcn_student, hidden=16, d_hidden=16)
    m = build_models(s, graph.num_features, graph.num_classes, seed=0)
    assert all(len(d.weights) == layers for d in m.discriminators)
    assert all(d.out_relu is (gcn_student == "reference") for d in m.discriminators)
    assert all(st.gcn_reference is (gcn_student == "reference") for st in m.students)


def test_the_students_optimiser_holds_no_discriminator_parameter(graph, monkeypatch):
    """oad.md §4 and §10.3: one Adam over the K students (the student step leaves every D unchanged), and one Adam
    per D_k over D_k alone, at the students' lr and no weight decay."""
    made = []

    class Recording(torch.optim.Adam):
        def __init__(self, params, **kw):
            params = list(params)
            made.append(({id(p) for p in params}, kw))
            super().__init__(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    s = dataclasses.replace(TINY, method="oad")
    m = build_models(s, graph.num_features, graph.num_classes, seed=0)
    train_group(graph, s, seed=0, models=m)
    assert made[0][0] == {id(p) for p in m.students.parameters()}
    assert made[0][1] == {"lr": s.lr, "weight_decay": s.weight_decay}
    assert [ids for ids, _ in made[1:]] == [{id(p) for p in d.parameters()} for d in m.discriminators]
    assert all(kw == {"lr": s.lr, "weight_decay": 0.0} for _, kw in made[1:])
