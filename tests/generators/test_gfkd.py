"""gfkd.md §11: the ARM estimator and the GFKD generator."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from gfkd.generators import gfkd as gfkd_gen
from gfkd.generators.bank import make_generator
from gfkd.generators.base import dense_logits, edge_mask, node_mask
from gfkd.generators.bn_stats import BNMatcher, bn_targets
from gfkd.generators.features import entropy_prior
from gfkd.generators.gfkd import arm_gradient

from .conftest import make_ctx

N_EST = 200_000


def test_arm_unbiased_on_linear_function():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(5, generator=g, dtype=torch.float64)
    phi = (torch.rand(5, generator=g, dtype=torch.float64) * 6 - 3).expand(N_EST, 5)
    u = torch.rand(N_EST, 5, generator=g, dtype=torch.float64)
    est, _, _ = arm_gradient(phi, lambda z: z @ c, u)
    p = torch.sigmoid(phi[0])
    se = est.std(0) / math.sqrt(N_EST)
    assert torch.all((est.mean(0) - c * p * (1 - p)).abs() <= 4 * se + 1e-12)


def test_arm_unbiased_on_nonlinear_function():
    g = torch.Generator().manual_seed(1)
    f = lambda z: (z[:, 0] + 2 * z[:, 1] - z[:, 2]) ** 2 + z[:, 0] * z[:, 2]  # noqa: E731
    phi0 = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    exact = torch.zeros(3, dtype=torch.float64)  # Σ_z f(z) ∇_φ p_φ(z) over the 8 states
    p = torch.sigmoid(phi0)
    for bits in itertools.product([0, 1], repeat=3):
        z = torch.tensor(bits, dtype=torch.float64)
        prob = torch.prod(torch.where(z == 1, p, 1 - p))
        exact += f(z.unsqueeze(0))[0] * prob * (z - p)  # ∇ log p = z − σ(φ)
    u = torch.rand(N_EST, 3, generator=g, dtype=torch.float64)
    est, _, _ = arm_gradient(phi0.expand(N_EST, 3), f, u)
    se = est.std(0) / math.sqrt(N_EST)
    assert torch.all((est.mean(0) - exact).abs() <= 4 * se)


def test_antithetic_pair_marginals_and_joint():
    g = torch.Generator().manual_seed(2)
    theta = torch.tensor([-1.5, 0.0, 0.8, 2.5], dtype=torch.float64)
    u = torch.rand(N_EST, 4, generator=g, dtype=torch.float64)
    drawn = []  # the pair arm_gradient itself hands the loss: A¹, then A²
    arm_gradient(theta.expand(N_EST, 4), lambda a: drawn.append(a) or torch.zeros(N_EST, dtype=a.dtype), u)
    a1, a2 = drawn
    p = torch.sigmoid(theta)
    se = torch.sqrt(p * (1 - p) / N_EST)
    assert torch.all((a1.mean(0) - p).abs() <= 4 * se) and torch.all((a2.mean(0) - p).abs() <= 4 * se)
    joint = (a1 * a2).mean(0)
    expected = (2 * p - 1).clamp(min=0)
    assert torch.all((joint - expected).abs() <= 4 * torch.sqrt(expected * (1 - expected) / N_EST) + 1e-3)


def test_packed_arm_gradient_equals_the_batched_form():
    """GFKD keeps θ packed ([E], one entry per edge variable, `owner` its graph): the estimate is the batched one."""
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(3, 4, generator=g)
    u = torch.rand(3, 4, generator=g)
    c = torch.randn(3, 4, generator=g)
    loss = lambda a: (a.view(3, 4) * c).sum(1) ** 2  # noqa: E731  per-graph losses, coupled inside each graph
    batched, l1, l2 = arm_gradient(theta, loss, u)
    packed, p1, p2 = arm_gradient(theta.flatten(), loss, u.flatten(), torch.arange(3).repeat_interleave(4))
    assert torch.equal(packed.view(3, 4), batched) and torch.equal(p1, l1) and torch.equal(p2, l2)


N = torch.tensor([5, 7, 6, 4])
Y = torch.tensor([0, 1, 0, 1])


def test_structure_step_is_forward_only_and_credits_each_graph_alone(tiny_teacher_dir, monkeypatch):
    """gfkd.md §11.4–5: no autograd, θ not a grad leaf; with β_BN = 0 and U fixed, moving graph 1's θ leaves every
    other graph's ĝ unchanged, on the generator's own per-graph loss."""
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=3", "generate.gfkd.beta_bn=0")
    calls = []

    def spy(theta, loss_fn, u, owner=None):
        assert not torch.is_grad_enabled() and not theta.requires_grad
        est = arm_gradient(theta, loss_fn, u, owner)
        moved = arm_gradient(theta + 3.0 * (owner == 1), loss_fn, u, owner)[0]
        assert not torch.equal(moved[owner == 1], est[0][owner == 1])  # the move did reach graph 1's credit
        assert torch.equal(moved[owner != 1], est[0][owner != 1])
        calls.append(1)
        return est

    monkeypatch.setattr(gfkd_gen, "arm_gradient", spy)
    gfkd_gen.generate(ctx, N, Y, make_generator(0))
    assert len(calls) == 3
    assert all(p.grad is None for p in ctx.teacher.parameters())


@pytest.mark.parametrize("directed", [True, False])
def test_finalised_graphs_are_the_mode_of_the_best_theta_and_reevaluate_to_its_loss(tiny_teacher_dir, directed):
    """gfkd.md §11.6: adjacency 1[θ ≥ 0] with an empty diagonal, exact one-hot features, and the saved (θ, Φ) pair
    of `finalize = best` gives the recorded best feature-step loss again (atol 1e-5)."""
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=12", f"generate.gfkd.directed={str(directed).lower()}")
    g = gfkd_gen.generate(ctx, N, Y, make_generator(0))
    mask = node_mask(N)
    n = mask.size(1)
    theta, phi = g.state["theta"], g.state["phi"]  # [B, N, N] zero off the edge variables; [B, N, F]
    a = ((theta >= 0) & edge_mask(N, n, directed)).float()
    adj = a if directed else a + a.transpose(1, 2)
    assert torch.equal(g.adj, adj) and torch.all(g.adj.diagonal(dim1=1, dim2=2) == 0)
    assert set(g.x[mask].unique().tolist()) == {0.0, 1.0} and torch.all(g.x[mask].sum(-1) == 1)
    gc = ctx.cfg.gfkd
    x = torch.softmax(phi, -1) * mask.unsqueeze(-1)
    with torch.no_grad(), BNMatcher(ctx.teacher, bn_targets(ctx.teacher, gc.bn_target, ctx.bn_eval_stats),
                                    gc.bn_form) as matcher:
        ce = F.cross_entropy(dense_logits(ctx, x, adj, mask, bucketed=True), Y)
        loss = ce + gc.beta_bn * matcher.loss() + gc.beta_oh * entropy_prior(x, mask)
    assert abs(float(loss) - g.info["best_loss"]) <= 1e-5
