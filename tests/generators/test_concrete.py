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


def test_kappa_falls_geometrically_from_kappa0_to_kappa1():
    """acgkd.md §3: κ_t = κ_0·(κ_1/κ_0)^{t/(T−1)}, 1 → 0.1 by default."""
    from gfkd.config import resolve_config
    from gfkd.generators.concrete import geometric_kappa

    a = resolve_config(None, []).generate.acgkd
    assert (a.kappa_schedule, a.kappa0, a.kappa1) == ("geometric", 1.0, 0.1)
    T = 201
    assert geometric_kappa(0, T, 1.0, 0.1) == pytest.approx(1.0)
    assert geometric_kappa(T - 1, T, 1.0, 0.1) == pytest.approx(0.1)
    assert geometric_kappa(100, T, 1.0, 0.1) == pytest.approx(math.sqrt(0.1))  # halfway: the geometric mean
    ratios = [geometric_kappa(t + 1, T, 1.0, 0.1) / geometric_kappa(t, T, 1.0, 0.1) for t in range(T - 1)]
    assert max(ratios) == pytest.approx(min(ratios))  # a constant ratio per step


def test_the_sampled_adjacency_is_zero_on_padding_in_the_generator(tiny_teacher_dir, monkeypatch):
    """acgkd.md §13 check 3 on the A the generator feeds the teacher (dense modes), not on a masked input: a padded
    pair in it would count in a real node's degree on featureless sets."""
    from gfkd.generators import acgkd
    from gfkd.generators.bank import make_generator
    from gfkd.generators.base import node_mask

    from .conftest import make_ctx

    seen = []
    real_dense = acgkd.dense_logits
    monkeypatch.setattr(acgkd, "dense_logits", lambda ctx, x, adj, mask: seen.append(adj) or real_dense(ctx, x, adj, mask))
    n = torch.tensor([3, 6, 4])
    ctx = make_ctx(tiny_teacher_dir, "generate.acgkd.xi_mode=none", "generate.iterations=2")
    st = acgkd._Structure(ctx, n, "none", 1.0, make_generator(0))
    with torch.no_grad():
        st.alpha.fill_(8.0)  # every pair, padded ones included, would be drawn as an edge
    phi = torch.zeros(len(n), int(n.max()), ctx.num_features)  # uniform features on every node
    acgkd._forward(ctx, st, st.logits(), phi, node_mask(n), n, 0.5, make_generator(1), hard=True)
    adj, mask = seen[-1], node_mask(n).float()
    assert (adj * (1 - mask).unsqueeze(1)).abs().sum() == 0 and (adj * (1 - mask).unsqueeze(2)).abs().sum() == 0
    assert (adj.sum((1, 2)) == n * (n - 1)).all()  # and every real pair is there
