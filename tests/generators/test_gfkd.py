"""gfkd.md §11: the ARM estimator and the GFKD generator."""

import itertools
import math

import torch

from gfkd.generators.gfkd import arm_gradient

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
    a1 = (u > torch.sigmoid(-theta)).double()
    a2 = (u < torch.sigmoid(theta)).double()
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
