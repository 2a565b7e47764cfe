"""acgkd.md §13.6-§13.7: the one-hot prior and the differentiable degree one-hot."""

import math

import torch

from gfkd.data.datasets import _Prepare
from gfkd.generators.features import degree_one_hot, entropy_prior
from torch_geometric.data import Data


def test_entropy_prior_values_and_descent():
    mask = torch.tensor([[True, True, False]])
    one_hot = torch.eye(4)[:3].unsqueeze(0)
    assert entropy_prior(one_hot, mask).item() == 0
    uniform = torch.full((1, 3, 4), 0.25)
    assert math.isclose(entropy_prior(uniform, mask).item(), math.log(4), rel_tol=1e-6)
    phi = torch.randn(1, 3, 4, requires_grad=True)
    opt = torch.optim.SGD([phi], lr=0.5)
    before = entropy_prior(torch.softmax(phi, -1), mask).item()
    for _ in range(20):
        opt.zero_grad()
        entropy_prior(torch.softmax(phi, -1), mask).backward()
        opt.step()
    assert entropy_prior(torch.softmax(phi, -1), mask).item() < before


def test_triangular_degree_one_hot_matches_loader_and_has_gradient():
    # a star with 5 leaves plus a path: degrees 5,1,1,1,1,2,1 ; cap D = 3
    edges = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (5, 6)]
    ei = torch.tensor([[u for u, v in edges] + [v for u, v in edges], [v for u, v in edges] + [u for u, v in edges]])
    loader_x = _Prepare(3)(Data(edge_index=ei, num_nodes=7)).x
    adj = torch.zeros(7, 7)
    adj[ei[0], ei[1]] = 1
    adj.requires_grad_()
    x = degree_one_hot(adj.sum(1), 3)
    assert torch.equal(x.detach(), loader_x)
    (x[:, 1] * torch.arange(7.0)).sum().backward()  # a loss on the degree-1 bin
    assert adj.grad.abs().sum() > 0


def test_degree_projection_equals_one_hot_times_weight():
    from gfkd.generators.features import degree_projection

    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 8, generator=g, dtype=torch.float64)  # [H, D + 1], D = 7
    deg = torch.tensor([0.0, 1.0, 2.3, 6.5, 7.0, 9.2, 3.0], dtype=torch.float64, requires_grad=True)
    ref = degree_one_hot(deg, 7) @ w.t()
    out = degree_projection(deg, w, 7)
    assert torch.allclose(out, ref, atol=1e-12)
    coef = torch.randn(7, 5, generator=g, dtype=torch.float64)
    (gd,) = torch.autograd.grad((out * coef).sum(), deg)
    (rd,) = torch.autograd.grad((ref * coef).sum(), deg)
    frac = deg.detach() != deg.detach().floor()  # the one-hot's kinks sit at integers: compare where smooth
    assert torch.allclose(gd[frac], rd[frac], atol=1e-12)


def test_degree_projection_gradients_to_degrees_and_weight_float64():
    from gfkd.generators.features import degree_one_hot, degree_projection

    g = torch.Generator().manual_seed(0)
    D = 6
    deg = torch.tensor([[0.2, 0.7, 1.4, 2.5], [5.2, 5.9, 7.5, 3.999]], dtype=torch.float64, requires_grad=True)  # off the kinks
    weight = torch.randn(4, D + 1, generator=g, dtype=torch.float64, requires_grad=True)
    out = degree_projection(deg, weight, D)
    ref = degree_one_hot(deg, D) @ weight.t()
    assert out.shape == (2, 4, 4) and torch.allclose(out, ref, atol=1e-12)
    coef = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * coef).sum(), (deg, weight))
    want = torch.autograd.grad((ref * coef).sum(), (deg, weight))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(got, want))
    assert torch.autograd.gradcheck(lambda d, w: degree_projection(d, w, D), (deg, weight))
