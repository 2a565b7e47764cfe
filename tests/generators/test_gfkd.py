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


# gfkd.md §1, §3, §4, §6: the loop's wiring. Each test below failed on a code change that left the tests above passing.

def test_the_structure_step_scores_the_freshly_updated_features(tiny_teacher_dir, monkeypatch):
    """§4.4: both ARM forwards of iteration t see softmax(Φ) after t's feature step, not the features it started from."""
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=2")
    xs, real = [], gfkd_gen.dense_logits

    def spy(ctx_, x, adj, mask, **kw):
        xs.append(x.detach().clone())
        return real(ctx_, x, adj, mask, **kw)

    monkeypatch.setattr(gfkd_gen, "dense_logits", spy)
    gfkd_gen.generate(ctx, N, Y, make_generator(0))
    # per iteration: the feature step's forward, then A¹ and A²
    for t in range(2):
        feat, a1, a2 = xs[3 * t: 3 * t + 3]
        assert torch.equal(a1, a2) and not torch.equal(a1, feat)
    assert torch.equal(xs[1], xs[3])  # Φ does not move between t's structure step and t + 1's feature step


def test_both_learning_rates_step_down_tenfold_in_the_loop(tiny_teacher_dir, monkeypatch):
    """§4.1: lr·0.1^⌊t / t_decay⌋ at every Adam step of θ and of Φ (here t_decay = 2)."""
    lrs: dict[int, list[float]] = {1: [], 3: []}  # θ packed [E]; Φ [B, N, F]
    real_adam = torch.optim.Adam

    class Adam(real_adam):
        def step(self, closure=None):
            lrs[self.param_groups[0]["params"][0].dim()].append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", Adam)
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=5", "generate.gfkd.lr_decay_every=2")
    gfkd_gen.generate(ctx, N, Y, make_generator(0))
    for lr, seen in ((ctx.cfg.gfkd.resolved_lr_structure("TINY"), lrs[1]), (ctx.cfg.gfkd.lr_features, lrs[3])):
        assert seen == pytest.approx([lr, lr, lr / 10, lr / 10, lr / 100])


@pytest.mark.parametrize("profile,every", [("paper", 1000), ("reference", 700)])
def test_both_learning_rates_fall_tenfold_every_decay_steps(tiny_teacher_dir, monkeypatch, profile, every):
    """§4.1, §6: lr·0.1^⌊t / t_decay⌋ on θ's and Φ's Adam alike, t_decay from the profile."""
    made, real = [], torch.optim.lr_scheduler.StepLR

    class Recording(real):
        def __init__(self, optimizer, step_size, gamma=0.1, **kw):
            made.append(([p.shape for g in optimizer.param_groups for p in g["params"]], step_size, gamma))
            super().__init__(optimizer, step_size, gamma, **kw)

    monkeypatch.setattr(torch.optim.lr_scheduler, "StepLR", Recording)
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=1", f"generate.gfkd.profile={profile}")
    gfkd_gen.generate(ctx, N, Y, make_generator(0))
    assert [(len(shapes[0]), step, gamma) for shapes, step, gamma in made] == [(1, every, 0.1), (3, every, 0.1)]


def _first_theta(ctx, monkeypatch, num_nodes):
    seen = []

    def spy(theta, loss_fn, u, owner=None):
        seen.append((theta.clone(), owner))
        return arm_gradient(theta, loss_fn, u, owner)

    monkeypatch.setattr(gfkd_gen, "arm_gradient", spy)
    gfkd_gen.generate(ctx, num_nodes, torch.zeros(len(num_nodes), dtype=torch.long), make_generator(0))
    return seen[0]  # θ before its first step


def test_every_edge_starts_at_its_own_uniform_probability(tiny_teacher_dir, monkeypatch):
    """§1: θ_gij = logit(p_gij), p_gij ~ U(0, 1)."""
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=1")
    theta, _ = _first_theta(ctx, monkeypatch, torch.tensor([30, 30]))
    p = torch.sigmoid(theta)  # 1740 edge variables
    assert abs(p.mean() - 0.5) < 0.04 and abs(p.std() - 12 ** -0.5) < 0.025  # about 5 standard errors each
    for q in (0.25, 0.5, 0.75):
        assert abs(float((p < q).float().mean()) - q) < 0.05


def test_the_density_init_starts_each_graph_at_its_density(tiny_teacher_dir, monkeypatch):
    """§7: generate.gfkd.init=density: θ = logit(ρ_g) + 0.5·N(0, 1)."""
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=1", "generate.gfkd.init=density")
    nodes = torch.tensor([30, 30])
    theta, owner = _first_theta(ctx, monkeypatch, nodes)
    noise = theta - torch.logit(ctx.init_density(nodes).view(-1))[owner]
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 0.5) < 0.04


@pytest.mark.parametrize("beta_oh", [0.0, 1.0])
def test_the_feature_loss_adds_beta_oh_times_the_one_hot_prior(tiny_teacher_dir, beta_oh):
    """§2: L = CE + β_BN·R_BN + β_oh·H̄(X); the logged loss minus the logged CE and β_BN·R_BN is β_oh·H̄ (H̄ > 0 for
    softmax rows of N(0, 1) logits)."""
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=1", f"generate.gfkd.beta_oh={beta_oh}")
    logged = {}
    gfkd_gen.generate(ctx, N, Y, make_generator(0), log=lambda step, m: logged.update(m))
    rest = logged["generate/train/loss"] - logged["generate/train/ce"] - ctx.cfg.gfkd.beta_bn * logged["generate/train/bn"]
    assert (rest > 0.1) if beta_oh else abs(rest) < 1e-6


def test_the_structure_loss_of_each_graph_carries_beta_bn_times_the_batch_r_bn(tiny_teacher_dir, monkeypatch):
    """§3: ℓ_g = CE_g + β_BN·R_BN: raising R_BN by c raises every graph's ℓ_g by β_BN·c."""
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=1", "generate.gfkd.beta_bn=0.5")
    offset = {"c": 0.0}

    class Shifted(gfkd_gen.BNMatcher):
        def loss(self):
            return super().loss() + offset["c"]

    diffs = []

    def spy(theta, loss_fn, u, owner=None):
        a = (u < torch.sigmoid(theta)).to(theta.dtype)
        base = loss_fn(a)
        offset["c"] = 10.0
        shifted = loss_fn(a)
        offset["c"] = 0.0
        diffs.append(shifted - base)
        return arm_gradient(theta, loss_fn, u, owner)

    monkeypatch.setattr(gfkd_gen, "BNMatcher", Shifted)
    monkeypatch.setattr(gfkd_gen, "arm_gradient", spy)
    gfkd_gen.generate(ctx, N, Y, make_generator(0))
    torch.testing.assert_close(diffs[0], torch.full((len(N),), 5.0))


def test_the_fair_variant_takes_the_shared_fixes(tiny_teacher_dir, monkeypatch):
    """§6 fair: structure lr 0.1, relative R_BN, density init, and k = 4 finalisation draws (the published row: lr
    from the dataset, plain L2, one mode structure)."""
    seen = {}
    real_adam, real_matcher, real_best = torch.optim.Adam, gfkd_gen.BNMatcher, gfkd_gen.best_draw

    class Adam(real_adam):
        def __init__(self, params, **kw):
            params = list(params)
            if params[0].dim() == 1:
                seen["lr"] = kw["lr"]
            super().__init__(params, **kw)

    def matcher(teacher, targets, form, *a, **kw):
        seen["form"] = form
        return real_matcher(teacher, targets, form, *a, **kw)

    def best(ctx_, candidates, *a, **kw):
        seen["draws"] = len(candidates)
        return real_best(ctx_, candidates, *a, **kw)

    monkeypatch.setattr(torch.optim, "Adam", Adam)
    monkeypatch.setattr(gfkd_gen, "BNMatcher", matcher)
    monkeypatch.setattr(gfkd_gen, "best_draw", best)
    for fair, expected in ((True, (0.1, "relative", 4)), (False, (1.0, "l2", 1))):
        ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=2", f"generate.gfkd.fair={str(fair).lower()}")
        gfkd_gen.generate(ctx, N, Y, make_generator(0))
        assert (seen["lr"], seen["form"], seen["draws"]) == expected


def test_finalize_modes_take_theta_and_phi_from_the_iterations_they_name(tiny_teacher_dir):
    """§4: best = (θ, Φ) of the best iteration; last = both final; reference = best θ with final Φ. The loop does not
    depend on the mode, so the three runs share one trajectory."""
    state = {}
    for mode in ("best", "last", "reference"):
        ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=12", f"generate.gfkd.finalize={mode}")
        state[mode] = gfkd_gen.generate(ctx, N, Y, make_generator(0)).state
    best, last, ref = state["best"], state["last"], state["reference"]
    assert not torch.equal(best["theta"], last["theta"]) and not torch.equal(best["phi"], last["phi"])
    assert torch.equal(ref["theta"], best["theta"]) and torch.equal(ref["phi"], last["phi"])


def test_arm_pairs_average_their_estimates(tiny_teacher_dir, monkeypatch):
    """§3: arm_pairs = k writes the mean of k independent estimates into θ.grad."""
    estimates, grads = [], []
    real_adam = torch.optim.Adam

    def spy(theta, loss_fn, u, owner=None):
        out = arm_gradient(theta, loss_fn, u, owner)
        estimates.append(out[0])
        return out

    class Adam(real_adam):
        def step(self, closure=None):
            p = self.param_groups[0]["params"][0]
            if p.dim() == 1:  # θ, packed
                grads.append(p.grad.clone())
            return super().step(closure)

    monkeypatch.setattr(gfkd_gen, "arm_gradient", spy)
    monkeypatch.setattr(torch.optim, "Adam", Adam)
    ctx = make_ctx(tiny_teacher_dir, "generate.gfkd.iterations=1", "generate.gfkd.arm_pairs=3")
    gfkd_gen.generate(ctx, N, Y, make_generator(0))
    assert len(estimates) == 3 and not torch.equal(estimates[0], estimates[1])
    torch.testing.assert_close(grads[0], sum(estimates) / 3)
