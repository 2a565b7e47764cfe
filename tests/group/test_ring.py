"""The ring's adversarial step shared by both groups (oad.md §10 items 1 and 3), on a tiny literal batch of two graphs
with both kinds of discriminator: per node (GCN over the batch) and per graph (mean-pooled MLP)."""

import pytest
import torch

from gfkd.group.graph import GraphDiscriminator, normalized_adjacency
from gfkd.group.ring import ring_step
from gfkd.models.discriminator import GCNDiscriminator

K, D = 4, 3
EDGES = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])  # a path 0-1-2 and an edge 3-4
BATCH = torch.tensor([0, 0, 0, 1, 1])


def _setup(level: str):
    torch.manual_seed(0)
    if level == "node":
        adj = normalized_adjacency(EDGES, 5)
        discs = [GCNDiscriminator(D, 8) for _ in range(K)]
        score = lambda k, x: discs[k](x, adj)  # noqa: E731
    else:
        discs = [GraphDiscriminator(D, 8) for _ in range(K)]
        score = lambda k, x: discs[k](x, BATCH, 2)  # noqa: E731
    d_opts = [torch.optim.Adam(d.parameters(), lr=0.01) for d in discs]
    h = [torch.randn(5, D, requires_grad=True) for _ in range(K)]  # student k's node embeddings, [ΣN, d]
    return discs, d_opts, h, score


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("level", ["node", "graph"])
def test_each_generator_loss_reaches_student_k_minus_1_only(level):
    _, d_opts, h, score = _setup(level)
    adv, d_total = ring_step(d_opts, h, score, d_loss_scale=1.0)
    assert len(adv) == K and d_total.grad_fn is None
    for k in range(K):
        grads = torch.autograd.grad(adv[k], h, allow_unused=True, retain_graph=True)
        reached = [j for j, g in enumerate(grads) if g is not None and g.abs().max() > 0]
        assert reached == [(k - 1) % K]


@pytest.mark.parametrize("level", ["node", "graph"])
def test_each_discriminator_steps_on_detached_inputs_before_its_generator_loss(level):
    discs, d_opts, h, score = _setup(level)
    before = [_params(d) for d in discs]
    calls = []  # (k, input needs grad, D_k's weights equal to its start)

    def spy(k, x):
        calls.append((k, x.requires_grad, all(torch.equal(a, b) for a, b in zip(before[k], _params(discs[k])))))
        return score(k, x)

    ring_step(d_opts, h, spy, d_loss_scale=1.0)
    # per k: real and fake scored detached by the unstepped D_k, then the fake with its graph by the stepped D_k
    assert calls == [c for k in range(K) for c in ((k, False, True), (k, False, True), (k, True, False))]
    assert all(x.grad is None for x in h)  # the discriminator steps sent no gradient to the students


def test_the_discriminator_loss_scale_scales_the_returned_sum():
    _, d_opts, h, score = _setup("graph")
    _, one = ring_step(d_opts, h, score, d_loss_scale=1.0)
    _, d_opts, h, score = _setup("graph")
    _, half = ring_step(d_opts, h, score, d_loss_scale=0.5)
    assert torch.allclose(half, 0.5 * one)
