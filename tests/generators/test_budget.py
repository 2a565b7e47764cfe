"""`budget` mode (acgkd.md §4, §6): the sparse candidate path equals the dense path restricted to the candidates."""

import math

import pytest
import torch
import torch.nn.functional as F

from gfkd.generators import acgkd
from gfkd.generators.bank import make_generator
from gfkd.generators.base import dense_logits, node_mask
from gfkd.generators.bn_stats import BNMatcher, bn_targets
from gfkd.generators.concrete import concrete_sample, pairs_to_adjacency

from .conftest import make_ctx

N = torch.tensor([5, 7, 6, 4])
Y = torch.tensor([0, 1, 0, 1])


def _loss(ctx, st, matcher, logits, alpha, beta_deg=1.0):
    d_bar = float(ctx.meta["degree_mean"])
    deg = ((st.expected_degree(alpha) - d_bar) / d_bar).pow(2).mean()
    return F.cross_entropy(logits, Y) + matcher.loss() + beta_deg * deg


@pytest.mark.parametrize("fixture", ["tiny_teacher_dir", "tiny_deg_teacher_dir"])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_budget_equals_dense_on_the_candidates_float64(request, fixture, hard, checkpoint):
    ctx = make_ctx(request.getfixturevalue(fixture), "generate.acgkd.xi_mode=budget", "generate.acgkd.xi=0.4")
    ctx.teacher.double()
    st = acgkd._Structure(ctx, N, "budget", 0.4, make_generator(0))
    st.alpha = st.alpha.detach().double().requires_grad_()
    mask = node_mask(N)
    B, Np = mask.shape
    g = make_generator(1)
    noise = torch.randn(st.alpha.shape, generator=g, dtype=torch.float64)
    x = None if ctx.featureless else torch.softmax(torch.randn(B, Np, ctx.num_features, generator=g,
                                                               dtype=torch.float64), -1) * mask.unsqueeze(-1)
    cand = st.cand.double()
    matcher = BNMatcher(ctx.teacher, bn_targets(ctx.teacher, "running", {}), "relative")
    try:
        # dense: every real pair sampled, then zeroed outside the candidates
        adj = pairs_to_adjacency(concrete_sample(st.alpha, 0.5, noise, hard=hard) * cand, Np)
        dense = dense_logits(ctx, x, adj, mask)
        loss_d = _loss(ctx, st, matcher, dense, st.alpha)
        grad_d, = torch.autograd.grad(loss_d, st.alpha)
        # sparse: the candidate list only
        w = concrete_sample(st.candidate_logits(st.alpha), 0.5, noise.view(-1)[st.flat], hard=hard)
        sparse = acgkd._sparse_logits(ctx, st, w, x, mask, checkpoint=checkpoint)
        loss_s = _loss(ctx, st, matcher, sparse, st.alpha)
        matcher.recording = False
        grad_s, = torch.autograd.grad(loss_s, st.alpha)
        matcher.recording = True
    finally:
        matcher.remove()
    assert torch.allclose(sparse, dense, atol=1e-9)
    assert torch.allclose(loss_s, loss_d, atol=1e-9)
    assert torch.allclose(grad_s, grad_d, atol=1e-9)
    assert grad_s.abs().sum() > 0 and torch.all(grad_s[~st.cand] == 0)


def test_budget_candidates_refresh_and_expected_degree():
    from gfkd.config import resolve_config
    from gfkd.generators.base import GenContext
    from gfkd.models import build_classifier

    meta = {"num_features": 3, "num_classes": 2, "feature_kind": "label", "max_degree": 5, "degree_mean": 2.0,
            "edge_density_mean": 0.2}
    ctx = GenContext(build_classifier("gin", 3, 2, layers=2, hidden=4), meta, {},
                     resolve_config(None, ["generate.acgkd.init_density=0.2"]).generate, torch.device("cpu"))
    n = torch.tensor([9, 12, 2, 12])
    st = acgkd._Structure(ctx, n, "budget", 0.3, make_generator(5))
    pairs = n * (n - 1) // 2
    k = torch.ceil(0.3 * pairs.float()).long()
    assert torch.equal(st.cand.sum(1), k) and torch.all(st.cand <= st.pmask)
    assert torch.equal(st.flat, st.flat.sort().values)
    with torch.no_grad():
        st.alpha.copy_(torch.randn(st.alpha.shape, generator=make_generator(6)))
    st.refresh()
    expected = torch.zeros_like(st.pmask)
    for b in range(len(n)):
        a = st.alpha[b].detach().masked_fill(~st.pmask[b], -math.inf)
        expected[b, a.topk(int(k[b])).indices] = True
    assert torch.equal(st.cand, expected)  # the k_g largest logits of real pairs
    dense = 2 * (torch.sigmoid(st.alpha) * st.cand).sum(1) / n
    assert torch.allclose(st.expected_degree(st.alpha), dense, atol=1e-6)
    adj = st.to_adjacency(torch.ones(st.flat.numel()))
    assert torch.equal(adj, pairs_to_adjacency(st.cand.float(), int(n.max())))


@pytest.mark.parametrize("mode", ["none", "lowrank", "budget"])
def test_auto_init_expected_mean_degree_is_near_the_metadata_degree(mode):
    """acgkd.md §13.13: within 15 % of d̄ for every n_g whose ρ_g is not clamped (budget: over the candidates)."""
    from gfkd.config import resolve_config
    from gfkd.generators.base import GenContext
    from gfkd.models import build_classifier

    meta = {"num_features": 3, "num_classes": 2, "feature_kind": "label", "max_degree": 5, "degree_mean": 3.0,
            "edge_density_mean": 0.05}
    ctx = GenContext(build_classifier("gin", 3, 2, layers=2, hidden=4), meta, {}, resolve_config(None).generate,
                     torch.device("cpu"))
    n = torch.tensor([40, 60, 80, 120])
    st = acgkd._Structure(ctx, n, mode, 0.3, make_generator(7))
    with torch.no_grad():
        deg = st.expected_degree(st.logits())
    assert torch.all((deg - 3.0).abs() <= 0.15 * 3.0), deg


def test_checkpointing_reaches_the_teacher_call_and_leaves_the_graphs_unchanged(tiny_teacher_dir, monkeypatch):
    """generate.acgkd.checkpoint only recomputes the teacher's layers in backward: the same generated chunk (what it
    saves in memory is measured in docs/benchmarks/checkpoint.md, not here)."""
    seen, orig = [], acgkd._sparse_logits
    monkeypatch.setattr(acgkd, "_sparse_logits", lambda *a, checkpoint=False: seen.append(checkpoint) or orig(
        *a, checkpoint=checkpoint))
    out = []
    for ck in ("false", "true"):
        ctx = make_ctx(tiny_teacher_dir, "generate.acgkd.xi_mode=budget", "generate.acgkd.xi=0.4",
                       "generate.iterations=6", f"generate.acgkd.checkpoint={ck}")
        out.append(acgkd.generate(ctx, N, Y, make_generator(3)))
    a, b = out
    assert True in seen and False in seen  # the key reaches the teacher call
    assert torch.equal(a.adj, b.adj) and torch.equal(a.x, b.x)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)


def test_auto_xi_is_three_times_the_density_between_0_02_and_1_and_budget_above_128_nodes(tiny_teacher_dir):
    """acgkd.md §4: xi = auto → min(1, max(0.02, 3·density)); xi_mode = auto → none when N ≤ 128, else budget."""
    ctx = make_ctx(tiny_teacher_dir)
    for density, xi in ((0.1, 0.3), (0.001, 0.02), (0.5, 1.0)):
        ctx.meta["edge_density_mean"] = density
        assert acgkd.resolve_xi(ctx, 50) == ("none", pytest.approx(xi))
    assert acgkd.resolve_xi(ctx, 128)[0] == "none" and acgkd.resolve_xi(ctx, 129)[0] == "budget"
    ctx = make_ctx(tiny_teacher_dir, "generate.acgkd.xi_mode=lowrank", "generate.acgkd.xi=0.4")
    assert acgkd.resolve_xi(ctx, 500) == ("lowrank", 0.4)  # set values win


def test_budget_candidates_are_reselected_every_xi_refresh_steps(tiny_teacher_dir, monkeypatch):
    """acgkd.md §4: the candidate pairs are re-selected every xi_refresh (50) steps."""
    from gfkd.config import resolve_config

    assert resolve_config(None, []).generate.acgkd.xi_refresh == 50
    calls = []
    real = acgkd._Structure.refresh
    monkeypatch.setattr(acgkd._Structure, "refresh", lambda self: calls.append(1) or real(self))
    counts = []
    for every in (1000, 50, 20):
        calls.clear()
        ctx = make_ctx(tiny_teacher_dir, "generate.acgkd.xi_mode=budget", "generate.acgkd.xi=0.4",
                       "generate.iterations=101", f"generate.acgkd.xi_refresh={every}")
        acgkd.generate(ctx, N, Y, make_generator(3))
        counts.append(len(calls))
    start = counts[0]  # the first selection, at no step
    assert counts == [start, start + 2, start + 5]  # steps 50, 100; 20, 40, 60, 80, 100


def test_lowrank_signs_are_uniform_on_minus_one_and_one(tiny_teacher_dir):
    """acgkd.md §4: lowrank's w ~ Uniform{−1, +1}."""
    ctx = make_ctx(tiny_teacher_dir)
    n = torch.full((64,), 40)
    st = acgkd._Structure(ctx, n, "lowrank", 0.5, make_generator(0))
    w = st.w.detach()
    assert set(w.unique().tolist()) == {-1.0, 1.0} and w.shape == (64, st.r)
    assert abs(float(w.mean())) < 0.1  # about half each
