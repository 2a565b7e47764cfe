import pytest
import torch

from gfkd.models.spmm import spmm


def _pair():
    # a: [3, 4] with a repeated row (two entries in row 0) and an empty row (row 2)
    idx = torch.tensor([[0, 0, 1], [1, 3, 0]])
    a = torch.sparse_coo_tensor(idx, torch.tensor([0.5, -2.0, 1.5]), (3, 4), check_invariants=True).coalesce()
    h = torch.arange(8.0).view(4, 2).requires_grad_(True)
    return a, h


@pytest.mark.parametrize("deterministic", [True, False])
def test_spmm_equals_the_dense_product_and_its_gradient(deterministic):
    a, h = _pair()
    up = torch.tensor([[1.0, -1.0], [2.0, 0.5], [3.0, 3.0]])
    out = spmm(a, h, deterministic=deterministic)
    (out * up).sum().backward()
    dense = a.to_dense()
    assert torch.equal(out.detach(), dense @ h.detach())
    assert torch.equal(h.grad, dense.T @ up)
    assert torch.equal(out[2].detach(), torch.zeros(2))  # an empty row stays zero


def test_spmm_picks_the_gather_path_only_on_cuda():
    a, h = _pair()
    assert not h.is_cuda  # on the CPU the default is torch.sparse.mm, whatever the deterministic mode
    assert torch.equal(spmm(a, h), torch.sparse.mm(a, h))
