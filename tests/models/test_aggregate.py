import torch

from gfkd.models import aggregate
from gfkd.models.aggregate import weighted_sum


def test_weighted_sum_matches_autograd_scatter_float64(monkeypatch):
    monkeypatch.setattr(aggregate, "CHUNK", 7)  # several chunks
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2, 5, 1, 3, 4, 0, 5, 2, 1],
                               [1, 0, 3, 2, 5, 4, 2, 0, 1, 5, 4, 3, 5, 0, 1, 2]])
    w = torch.rand(16, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.zeros(6, 4, dtype=torch.float64).index_add(0, edge_index[1], x[edge_index[0]] * w.unsqueeze(-1))
    out = weighted_sum(x, edge_index, w)
    assert torch.allclose(out, ref, atol=1e-12)
    coef = torch.randn(6, 4, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad((out * coef).sum(), (x, w))
    rx, rw = torch.autograd.grad((ref * coef).sum(), (x, w))
    assert torch.allclose(gx, rx, atol=1e-12) and torch.allclose(gw, rw, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: weighted_sum(a, edge_index, b), (x, w))
