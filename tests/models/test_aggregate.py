import pytest
import torch

from gfkd.models import aggregate
from gfkd.models.aggregate import weighted_sum

EDGES = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2, 5, 1, 3, 4, 0, 5, 2, 1, 2],
                      [1, 0, 3, 2, 5, 4, 2, 0, 1, 5, 4, 3, 5, 0, 1, 2, 3]])  # (2, 3) twice: duplicates add up


def _reference(x, edge_index, w):
    return torch.zeros(x.shape, dtype=x.dtype).index_add(0, edge_index[1], x[edge_index[0]] * w.unsqueeze(-1))


@pytest.mark.parametrize("n", [6, 8])  # 8: nodes 6 and 7 have no edges
def test_weighted_sum_matches_autograd_scatter_float64(n):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(EDGES.size(1), generator=g, dtype=torch.float64, requires_grad=True)
    ref = _reference(x, EDGES, w)
    out = weighted_sum(x, EDGES, w)
    assert torch.allclose(out, ref, atol=1e-12)
    coef = torch.randn(n, 4, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad((out * coef).sum(), (x, w))
    rx, rw = torch.autograd.grad((ref * coef).sum(), (x, w))
    assert torch.allclose(gx, rx, atol=1e-12) and torch.allclose(gw, rw, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: weighted_sum(a, EDGES, b), (x, w))


def test_weighted_sum_gradient_to_one_input_only_and_empty_edge_list():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(EDGES.size(1), dtype=torch.float64)  # no gradient wanted for w
    (gx,) = torch.autograd.grad(weighted_sum(x, EDGES, w).pow(2).sum(), (x,))
    (rx,) = torch.autograd.grad(_reference(x, EDGES, w).pow(2).sum(), (x,))
    assert torch.allclose(gx, rx, atol=1e-12)
    empty = torch.zeros(2, 0, dtype=torch.long)
    w0 = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    out = weighted_sum(x, empty, w0)
    assert torch.equal(out, torch.zeros_like(x))
    gx, gw = torch.autograd.grad(out.sum(), (x, w0))
    assert torch.equal(gx, torch.zeros_like(x)) and gw.numel() == 0


def test_weighted_sum_reuses_the_pattern_of_the_same_edge_list_only():
    x = torch.randn(6, 2)
    w = torch.rand(EDGES.size(1))
    ei = EDGES.clone()
    weighted_sum(x, ei, w)
    first = aggregate._last[3]
    weighted_sum(x, ei, w)
    assert aggregate._last[3] is first  # same tensor: cached
    ei[0, 0] = 2  # modified in place: rebuilt
    out = weighted_sum(x, ei, w)
    assert aggregate._last[3] is not first and torch.allclose(out, _reference(x, ei, w), atol=1e-6)
