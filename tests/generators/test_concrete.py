"""acgkd.md §13.1-§13.3: Binary Concrete samples and the symmetric adjacency."""

import math

import pytest
import torch

from gfkd.generators.concrete import (concrete_sample, logistic_noise, pairs_to_adjacency, real_pairs,
                                      triu_pairs)

DRAWS = 200_000


@pytest.mark.parametrize("alpha", [-3.0, -1.0, 0.0, 0.5, 2.0])
@pytest.mark.parametrize("kappa", [0.1, 0.5, 1.0, 2.0])
def test_hard_sample_frequency_is_bernoulli_sigmoid_alpha(alpha, kappa):
    g = torch.Generator().manual_seed(int(1000 * alpha + 10 * kappa) % 2**31)
    a = torch.full((DRAWS,), alpha)
    h = concrete_sample(a, kappa, logistic_noise(a.shape, g), hard=True)
    assert set(h.unique().tolist()) <= {0.0, 1.0}
    p = 1 / (1 + math.exp(-alpha))
    assert abs(h.mean().item() - p) <= 4 * math.sqrt(p * (1 - p) / DRAWS)


def test_straight_through_gradient_is_soft_sample_derivative():
    g = torch.Generator().manual_seed(0)
    alpha = torch.randn(1000, generator=g, dtype=torch.float64).requires_grad_()
    noise = logistic_noise(alpha.shape, g, dtype=torch.float64)
    kappa = 0.7
    a = concrete_sample(alpha, kappa, noise, hard=True)
    a.sum().backward()
    s = torch.sigmoid((alpha + noise) / kappa).detach()
    assert torch.allclose(alpha.grad, s * (1 - s) / kappa, atol=1e-6)


def test_soft_samples_concentrate_as_kappa_falls():
    g = torch.Generator().manual_seed(1)
    alpha = torch.randn(20000, generator=g)
    noise = logistic_noise(alpha.shape, g)
    h = (alpha + noise > 0).float()
    gaps = [(concrete_sample(alpha, k, noise, hard=False) - h).abs().mean().item() for k in (2, 1, 0.5, 0.1)]
    assert all(a > b for a, b in zip(gaps, gaps[1:]))


def test_adjacency_is_symmetric_zero_diagonal_zero_padding():
    n = torch.tensor([3, 5, 4])
    pm = real_pairs(n, 5)
    assert pm.sum(1).tolist() == [3, 10, 6]
    vals = torch.rand(3, 10) * pm
    adj = pairs_to_adjacency(vals, 5)
    assert torch.equal(adj, adj.transpose(1, 2))
    assert torch.all(adj.diagonal(dim1=1, dim2=2) == 0)
    assert torch.all(adj[0, 3:] == 0) and torch.all(adj[0, :, 3:] == 0) and torch.all(adj[2, 4] == 0)
    i, j = triu_pairs(5)
    assert torch.all(i < j) and len(i) == 10
