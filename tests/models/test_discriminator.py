"""OAD discriminator: output shape, the reference ReLU floor, and that it learns a separable toy task (oad.md §10.6)."""

import torch

from gfkd.losses.group import discriminator_loss
from gfkd.models.discriminator import GCNDiscriminator
from gfkd.models.node_students import gcn_adjacency

PATH = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4], [1, 0, 2, 1, 3, 2, 4, 3]])  # 5-node path


def test_scores_one_logit_per_node_and_layer_count():
    adj = gcn_adjacency(PATH, 5)
    assert GCNDiscriminator(3, 4)(torch.randn(5, 3), adj).shape == (5,)
    assert len(GCNDiscriminator(3, 4).weights) == 2 and len(GCNDiscriminator(3, 4, layers=1).weights) == 1


def test_single_layer_is_a_gcn_by_hand():
    d = GCNDiscriminator(2, layers=1)
    with torch.no_grad():
        d.weights[0].copy_(torch.tensor([[1.0], [-1.0]]))
        d.biases[0].fill_(0.5)
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    adj = gcn_adjacency(PATH, 5).to_dense()
    torch.testing.assert_close(d(h, gcn_adjacency(PATH, 5)), (adj @ (h @ torch.tensor([1.0, -1.0]))) + 0.5)


def test_without_adjacency_each_node_is_scored_alone_as_with_the_identity():
    d = GCNDiscriminator(3, 4)
    h = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    eye = torch.eye(5).to_sparse()
    torch.testing.assert_close(d(h, None), d(h, eye))  # the graph-agnostic D: an MLP per node
    torch.testing.assert_close(d(h, None)[:2], d(h[:2], None))  # a node's score ignores the other nodes


def test_out_relu_never_calls_a_node_fake_above_one_half():
    d = GCNDiscriminator(3, 4, out_relu=True)
    s = d(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)) * 10, gcn_adjacency(PATH, 5))
    assert bool((torch.sigmoid(s) >= 0.5).all())


def test_clean_discriminator_separates_toy_embeddings():
    gen = torch.Generator().manual_seed(0)
    n = 40
    src = torch.randint(0, n, (120,), generator=gen)
    dst = torch.randint(0, n, (120,), generator=gen)
    adj = gcn_adjacency(torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1), n)
    base = torch.randn(n, 8, generator=gen)
    real, fake = base + 1.5, base - 1.5  # separable along the all-ones direction
    torch.manual_seed(0)
    d = GCNDiscriminator(8, 16)
    opt = torch.optim.Adam(d.parameters(), lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        discriminator_loss(d(real, adj), d(fake, adj)).backward()
        opt.step()
    with torch.no_grad():
        correct = torch.cat([d(real, adj) > 0, d(fake, adj) < 0]).float().mean()
    assert correct > 0.95
