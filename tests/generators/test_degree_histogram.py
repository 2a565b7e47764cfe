"""The degree histogram read back from a featureless GIN teacher's first layer, and the β-model start
(generate.acgkd.init_degrees=teacher)."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from gfkd.errors import StageError
from gfkd.generators import acgkd
from gfkd.generators.bank import make_generator
from gfkd.generators.bn_stats import bn_targets
from gfkd.generators.degree_histogram import beta_model_logits, sample_degrees, teacher_histogram
from gfkd.models import build_classifier
from gfkd.models.bn_stats import bn_input_statistics

from .conftest import make_ctx

D = 5  # degree one-hot width D + 1 = 6, below the hidden width 16: the system is determined
EDGES = [  # tiny literal graphs: a star, a path, a triangle with a tail, a 4-clique
    [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)],
    [(0, 1), (1, 2), (2, 3)],
    [(0, 1), (1, 2), (2, 0), (2, 3)],
    [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
]


def _graphs():
    out = []
    for edges in EDGES:
        n = max(max(e) for e in edges) + 1
        ei = torch.tensor(edges).t()
        ei = torch.cat([ei, ei.flip(0)], 1)
        deg = torch.bincount(ei[0], minlength=n).clamp(max=D)
        out.append(Data(x=torch.nn.functional.one_hot(deg, D + 1).float(), edge_index=ei, num_nodes=n))
    return out


def _histogram(graphs):
    deg = torch.cat([g.x.argmax(1) for g in graphs])
    return torch.bincount(deg, minlength=D + 1).float() / len(deg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_histogram_is_read_back_from_the_first_bn_mean(seed):
    torch.manual_seed(seed)
    model = build_classifier("gin", D + 1, 2, layers=3, hidden=16).eval()
    graphs = _graphs()
    stats = bn_input_statistics(model, [Batch.from_data_list(graphs)], torch.device("cpu"))
    targets = {n[: -len(".mean")]: (stats[n], stats[n[: -len(".mean")] + ".var"]) for n in stats if n.endswith(".mean")}
    true = _histogram(graphs)
    degree_mean = float((true * torch.arange(D + 1)).sum())
    p = teacher_histogram(model, targets, degree_mean)
    assert p.shape == (D + 1,) and torch.all(p >= 0) and abs(float(p.sum()) - 1) < 1e-5
    assert 0.5 * (p - true).abs().sum() < 1e-3, (p, true)


@pytest.mark.parametrize("switches", [{}, {"loops_in_data": True}, {"loops_in_data": True, "skip_isolated": True}])
def test_histogram_counts_the_teachers_self_loops_where_it_has_them(switches):
    """gfkd.md §8: a self-loop edge counts its node once more, except on a node without edges under skip_isolated;
    the graphs include two isolated nodes, so bin 0 tells the two apart."""
    torch.manual_seed(0)
    model = build_classifier("gin", D + 1, 2, layers=3, hidden=16, **switches).eval()
    lonely = Data(x=torch.nn.functional.one_hot(torch.tensor([1, 1, 0, 0]), D + 1).float(),
                  edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=4)  # an edge and two isolated nodes
    graphs = [*_graphs(), lonely]
    stats = bn_input_statistics(model, [Batch.from_data_list(graphs)], torch.device("cpu"))
    targets = {n[: -len(".mean")]: (stats[n], stats[n[: -len(".mean")] + ".var"]) for n in stats if n.endswith(".mean")}
    true = _histogram(graphs)
    p = teacher_histogram(model, targets, float((true * torch.arange(D + 1)).sum()))
    assert true[0] > 0 and 0.5 * (p - true).abs().sum() < 1e-3, (p, true)


def test_histogram_needs_a_gin_teacher():
    model = build_classifier("gcn", D + 1, 2, layers=3, hidden=16).eval()
    targets = bn_targets(model, "running", {})
    with pytest.raises(ValueError, match="GIN"):
        teacher_histogram(model, targets, 2.0)


def test_beta_model_matches_graphical_degrees_and_masks_padding():
    n = torch.tensor([4, 6])
    deg = torch.tensor([[3.0, 1, 1, 1, 0, 0], [2, 2, 2, 2, 2, 2]])  # a star, a cycle
    logits = beta_model_logits(deg, n)
    expected = torch.sigmoid(logits).sum(2)
    assert torch.allclose(expected[0, :4], deg[0, :4].clamp(max=2.95), atol=0.05)  # n − 1.05 caps the hub
    assert torch.allclose(expected[1], deg[1], atol=1e-3)
    assert torch.all(logits[0, 4:] == -30) and torch.all(logits[0, :, 4:] == -30)
    assert torch.all(torch.diagonal(logits, dim1=1, dim2=2) == -30)
    assert torch.allclose(logits, logits.transpose(1, 2))


def test_sampled_degrees_fit_each_graph_and_repeat_with_the_seed():
    p = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.2, 0.2])
    n = torch.tensor([3, 6, 2])
    a = sample_degrees(p, n, make_generator(3))
    b = sample_degrees(p, n, make_generator(3))
    assert torch.equal(a, b)
    for g, k in enumerate(n.tolist()):
        assert torch.all(a[g, :k] <= k - 1) and torch.all(a[g, k:] == 0)
    assert torch.all(a[0, :3] >= 1)  # p_0 = 0 is never drawn


def test_coupled_degrees_grow_with_size_and_keep_the_pooled_histogram():
    p = torch.tensor([0.0, 0.3, 0.3, 0.2, 0.1, 0.1])
    n = torch.tensor([6, 40] * 200)  # chunk order need not be sorted: ranks come from the counts
    a = sample_degrees(p, n, make_generator(5), coupling=0.9)
    assert torch.equal(a, sample_degrees(p, n, make_generator(5), coupling=0.9))
    small, big = a[0::2, :6], a[1::2]
    assert torch.all(small <= 5) and torch.all(a[0::2, 6:] == 0) and bool(small.ge(1).all())
    assert float(big.mean()) > float(small.mean()) + 1.0  # larger graphs draw larger degrees
    flat = torch.cat([small.flatten(), big.flatten()]).long()
    pooled = torch.bincount(flat, minlength=6).float() / len(flat)
    assert torch.allclose(pooled, p, atol=0.03), pooled  # the copula keeps every node's quantile uniform
    indep = sample_degrees(p, n, make_generator(5))
    assert abs(float(indep[1::2].mean()) - float(indep[0::2, :6].mean())) < 0.2  # ρ = 0: size plays no part


@pytest.mark.parametrize("mode", ["none", "budget"])
def test_teacher_start_follows_the_recovered_histogram(tiny_deg_teacher_dir, mode):
    ctx = make_ctx(tiny_deg_teacher_dir, "generate.acgkd.init_degrees=teacher")
    hist = acgkd.start_histogram(ctx, bn_targets(ctx.teacher, "auto", ctx.bn_eval_stats), mode)
    assert hist is not None and abs(float(hist.sum()) - 1) < 1e-5
    n = torch.full((64,), 12)
    st = acgkd._Structure(ctx, n, mode, 1.0, make_generator(0), hist)
    start_mean = float(st.expected_degree(st.logits().detach()).mean())
    target_mean = float((hist * torch.arange(len(hist))).sum())
    assert abs(start_mean - target_mean) < 0.25 * target_mean + 0.3, (start_mean, target_mean)


def test_teacher_start_is_refused_where_it_cannot_apply(tiny_teacher_dir, tiny_deg_teacher_dir):
    ctx = make_ctx(tiny_teacher_dir, "generate.acgkd.init_degrees=teacher")
    with pytest.raises(StageError, match="featureless"):
        acgkd.start_histogram(ctx, bn_targets(ctx.teacher, "auto", ctx.bn_eval_stats), "none")
    ctx = make_ctx(tiny_deg_teacher_dir, "generate.acgkd.init_degrees=teacher")
    with pytest.raises(StageError, match="xi_mode"):
        acgkd.start_histogram(ctx, bn_targets(ctx.teacher, "auto", ctx.bn_eval_stats), "lowrank")
    uniform = make_ctx(tiny_deg_teacher_dir, "generate.acgkd.init_degrees=uniform")
    assert acgkd.start_histogram(uniform, {}, "none") is None


def test_auto_start_and_weights_follow_the_teacher(tiny_teacher_dir, tiny_deg_teacher_dir):
    for path, featureless in ((tiny_teacher_dir, False), (tiny_deg_teacher_dir, True)):
        ctx = make_ctx(path)
        targets_bn = bn_targets(ctx.teacher, "auto", ctx.bn_eval_stats)
        hist = acgkd.start_histogram(ctx, targets_bn, "none")
        assert (hist is not None) == featureless
        assert acgkd.start_histogram(ctx, targets_bn, "lowrank") is None  # auto falls back, never raises
        assert acgkd.first_layer_weight(ctx, hist is not None) == (1.0 if featureless else 10.0)
        assert acgkd.histogram_weight(ctx, hist is not None) == (10.0 if featureless else 0.0)
    ctx = make_ctx(tiny_deg_teacher_dir, "generate.bn_first_weight=3", "generate.acgkd.beta_hist=0.5")
    assert acgkd.first_layer_weight(ctx, True) == 3.0 and acgkd.histogram_weight(ctx, True) == 0.5


def test_expected_node_degrees_budget_equals_dense(tiny_deg_teacher_dir):
    ctx = make_ctx(tiny_deg_teacher_dir)
    n = torch.tensor([5, 7, 6])
    dense = acgkd._Structure(ctx, n, "none", 1.0, make_generator(2))
    budget = acgkd._Structure(ctx, n, "budget", 1.0, make_generator(2))  # ξ = 1: every real pair a candidate
    with torch.no_grad():
        budget.alpha.copy_(dense.alpha)
    want = torch.stack([dense.expected_degree(dense.alpha).detach(), budget.expected_degree(budget.alpha).detach()])
    got_d = dense.expected_node_degrees(dense.alpha).detach()
    got_b = budget.expected_node_degrees(budget.alpha).detach()
    assert got_d.shape == (int(n.sum()),) and torch.allclose(got_d, got_b, atol=1e-6)
    per_graph = torch.zeros(3).index_add(0, torch.repeat_interleave(torch.arange(3), n), got_d) / n
    assert torch.allclose(per_graph, want[0], atol=1e-5) and torch.allclose(want[0], want[1], atol=1e-5)


def test_histogram_prior_is_a_term_whose_gradient_lowers_it(tiny_deg_teacher_dir):
    ctx = make_ctx(tiny_deg_teacher_dir, "generate.acgkd.init_degrees=teacher", "generate.acgkd.beta_hist=1",
                   "generate.beta_bn=0")
    targets_bn = bn_targets(ctx.teacher, "auto", ctx.bn_eval_stats)
    n = torch.full((8,), 9)
    st = acgkd._Structure(ctx, n, "none", 1.0, make_generator(4), acgkd.start_histogram(ctx, targets_bn, "none"))
    with torch.no_grad():
        st.alpha.add_(2.0)  # far denser than the start
    from gfkd.generators.bn_stats import BNMatcher
    from gfkd.generators.base import node_mask
    matcher = BNMatcher(ctx.teacher, targets_bn)
    try:
        mask = node_mask(n)
        logits, x = acgkd._forward(ctx, st, st.alpha, None, mask, n, 1.0, make_generator(5), hard=True)
        _, terms = acgkd.objective(ctx, st, st.alpha, logits, x, mask, torch.zeros(8, dtype=torch.long), matcher)
        grad, = torch.autograd.grad(terms["hist"], st.alpha)
        with torch.no_grad():
            after = st.alpha - 5.0 * grad / grad.abs().max()
            hist = acgkd.degree_one_hot(st.expected_node_degrees(after), ctx.max_degree).mean(0)
            w1_after = acgkd.histogram_w1(hist, st.start_hist)
    finally:
        matcher.remove()
    assert terms["hist"] > 1.0 and w1_after < 0.8 * terms["hist"], (terms["hist"], w1_after)


def test_histogram_w1_is_the_shift_in_degrees():
    e = torch.eye(8)
    assert float(acgkd.histogram_w1(e[2], e[5])) == 3.0
    assert float(acgkd.histogram_w1(0.5 * (e[1] + e[3]), e[2])) == 1.0
    assert float(acgkd.histogram_w1(e[4], e[4])) == 0.0
