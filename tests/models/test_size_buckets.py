"""Size buckets: the partition is optimal and complete, and the bucketed dense twin equals the padded one (logits,
BN statistics, gradients), graph order kept."""

import itertools

import pytest
import torch

from gfkd.models import DenseTwin, build_classifier
from gfkd.models.size_buckets import size_buckets


def _work(n, groups):
    return len(n) * max(n) ** 2 if groups is None else sum(len(i) * b * b for i, b in groups)


def _optimum(n, k):
    """Least Σ |group|·max² over at most k contiguous groups of the sorted sizes, by trying every cut."""
    sizes = sorted(set(n))
    best = float("inf")
    for r in range(k):
        for cuts in itertools.combinations(sizes[:-1], r):
            lows, highs = [0, *cuts], [*cuts, sizes[-1]]
            best = min(best, sum(sum(lo < x <= hi for x in n) * hi * hi for lo, hi in zip(lows, highs)))
    return best


def test_buckets_cover_every_graph_once_with_the_least_padded_work():
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        n = torch.randint(2, 40, (int(torch.randint(2, 10, (1,), generator=g)),), generator=g)
        for k in (2, 3, 4):
            groups = size_buckets(n, k)
            if groups is None:  # one padded batch: less than the minimum saving was on offer
                assert _optimum(n.tolist(), k) > 0.8 * _work(n.tolist(), None)
                continue
            assert sorted(torch.cat([i for i, _ in groups]).tolist()) == list(range(len(n)))
            assert all(int(n[i].max()) <= b for i, b in groups) and len(groups) <= k
            assert _work(n.tolist(), groups) == _optimum(n.tolist(), k)


def test_no_buckets_when_they_save_little_or_are_off():
    assert size_buckets(torch.tensor([10, 11, 12, 12]), 4) is None  # ≤ 20 % saved: keep one batch
    assert size_buckets(torch.tensor([4, 250]), 1) is None
    assert size_buckets(torch.tensor([7]), 4) is None
    assert [(i.tolist(), b) for i, b in size_buckets(torch.tensor([4, 250, 5, 6]), 2)] == [([0, 2, 3], 6), ([1], 250)]


@pytest.mark.parametrize("arch,projected", [("gin", False), ("gin", True), ("gcn", False)])  # GIN projects when F > H
@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_bucketed_twin_equals_the_padded_twin(arch, pooling, projected):
    """The dense/dense pair: the same logits, BN input statistics and gradients (x and soft adj) up to rounding."""
    torch.manual_seed(0)
    n = torch.tensor([3, 17, 4, 2, 16, 5, 18, 3])
    B, N, F = len(n), int(n.max()), 12 if projected else 6  # 12 > hidden: GIN projects before aggregating
    model = build_classifier(arch, F, 3, layers=4, hidden=8, pooling=pooling, dropout=0.0).eval()
    mask = torch.arange(N) < n.unsqueeze(1)
    pair = mask.unsqueeze(1) & mask.unsqueeze(2) & ~torch.eye(N, dtype=torch.bool)
    adj0 = torch.rand(B, N, N) * pair
    width = 8 if projected else F  # a projected first layer takes its projection, [B, N, H]
    x0 = torch.randn(B, N, width) * mask.unsqueeze(-1)
    groups = size_buckets(n, 3)
    assert groups is not None and len(groups) == 3
    seen = {}

    def record(key):
        def hook(mod, inp):
            seen.setdefault(key, []).append(inp[0])
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules()
             if isinstance(m, torch.nn.BatchNorm1d)]
    out = {}
    for key, b in (("padded", None), ("buckets", groups)):
        x, adj = x0.clone().requires_grad_(), adj0.clone().requires_grad_()
        logits = DenseTwin(model)(x, adj, mask, projected=projected, buckets=b)
        (logits * torch.arange(1.0, 4.0)).sum().backward()
        out[key] = (logits, x.grad, adj.grad)
    for h in hooks:
        h.remove()
    (lp, xp, ap), (lb, xb, ab) = out["padded"], out["buckets"]
    assert torch.allclose(lp, lb, atol=1e-5) and torch.allclose(xp, xb, atol=1e-5)
    assert torch.allclose(ap[pair], ab[pair], atol=1e-5)  # edge variables; entries beyond a bucket's bound are no edges
    for name, (pad, buck) in seen.items():  # the same real nodes reach BN, in bucket order
        assert pad.shape == buck.shape == (int(n.sum()), pad.size(1))
        assert torch.allclose(pad.mean(0), buck.mean(0), atol=1e-5) and torch.allclose(pad.var(0), buck.var(0), atol=1e-5)
