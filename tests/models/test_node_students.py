"""Node students (GCN, GAT, SAGE): operators on a literal graph, shapes, where h is read, dropout (oad.md §5, §9)."""

import pytest
import torch

from gfkd.models.node_students import GATLayer, NodeGraph, NodeStudent, gcn_adjacency, mean_adjacency, sparse_dropout

# 4 nodes: 0-1, 1-2, both directions; node 3 isolated
EI = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
X = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0]])


def test_gcn_adjacency_symmetric_normalisation_with_and_without_self_loops():
    a = gcn_adjacency(EI, 4).to_dense()
    d = torch.tensor([2.0, 3.0, 2.0, 1.0])  # degrees with self-loops
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1.0]]) / (d[:, None] * d[None]).sqrt()
    torch.testing.assert_close(a, expected)
    b = gcn_adjacency(EI, 4, self_loops=False).to_dense()
    assert b[3].abs().sum() == 0 and b[0, 0] == 0
    torch.testing.assert_close(b[0, 1], torch.tensor(1 / 2 ** 0.5))


def test_mean_adjacency_averages_neighbours_and_zeroes_isolated_rows():
    m = mean_adjacency(EI, 4).to_dense()
    torch.testing.assert_close(m, torch.tensor([[0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 1, 0, 0], [0, 0, 0, 0.0]]))


@pytest.mark.parametrize("backbone,d", [("gcn", 16), ("gat", 128), ("sage", 16)])
def test_shapes_and_embedding_width(backbone, d):
    g = NodeGraph.build(X, EI, torch.tensor([0, 1, 1, 0]))
    z, h = NodeStudent(backbone, 3, 2)(g)
    assert z.shape == (4, 2) and h.shape == (4, d)


def test_gcn_h_after_relu_by_default_and_before_it_in_reference():
    g = NodeGraph.build(X, EI)
    torch.manual_seed(0)
    _, h = NodeStudent("gcn", 3, 2, hidden=8).eval()(g)
    torch.manual_seed(0)
    ref = NodeStudent("gcn", 3, 2, hidden=8, gcn_reference=True).train()
    _, h_ref = ref(g)
    assert (h >= 0).all() and (h_ref < 0).any()
    assert torch.equal(ref(g)[0], ref(g)[0])  # no dropout in the reference GCN, even in train mode
    assert torch.equal(h_ref[3], ref.b1.detach())  # isolated node without self-loop: bias only


def test_sage_h_is_read_before_or_after_the_hidden_dropout():
    g = NodeGraph.build(X, EI)
    hs = {}
    for where in ("before_dropout", "after_dropout"):
        torch.manual_seed(0)
        s = NodeStudent("sage", 3, 2, hidden=32, dropout=0.5, sage_h=where).train()
        torch.manual_seed(1)  # the same dropout masks for both
        hs[where] = s(g)[1].detach()
    before, after = hs["before_dropout"], hs["after_dropout"]
    assert bool(((after == 0) | torch.isclose(after, 2 * before)).all())
    assert ((after == 0) & (before > 0)).any()


def test_gat_attention_is_a_convex_combination():
    layer = GATLayer(3, 2, heads=2, concat=False, attn_dropout=0.0)
    same = torch.ones(4, 3)  # identical features: every attention-weighted mean equals W x
    loops = torch.tensor([[0, 1, 1, 2, 0, 1, 2, 3], [1, 0, 2, 1, 0, 1, 2, 3]])
    out = layer(same, loops)
    wx = (same[:1] @ layer.weight).view(2, 2).mean(0) + layer.bias
    torch.testing.assert_close(out, wx.expand(4, 2))


def test_sparse_dropout_keeps_zeros_and_scales_kept_values():
    x = X.to_sparse().coalesce()
    torch.manual_seed(0)
    y = sparse_dropout(x, 0.5, True).to_dense()
    assert bool(((y == 0) | (y == 2 * X)).all()) and torch.equal(sparse_dropout(x, 0.5, False).to_dense(), X)


def test_clean_gcn_drops_half_its_hidden_units_in_training_only():
    """oad.md §5: the clean GCN student is GCN → ReLU → dropout 0.5 → GCN (the reference one has no dropout, above)."""
    g = NodeGraph.build(X, EI)
    torch.manual_seed(0)
    s = NodeStudent("gcn", 3, 2, hidden=32)
    assert s.dropout == 0.5
    s.train()
    assert not torch.equal(s(g)[0], s(g)[0])
    s.eval()
    assert torch.equal(s(g)[0], s(g)[0])


@pytest.mark.parametrize("self_loops", [True, False])
def test_gat_attends_to_the_node_itself_only_with_self_loops(self_loops):
    """oad.md §9 gat_self_loops: without self-loops the isolated node 3 aggregates nothing, so both layers give it
    their bias alone (h = ReLU(b1), z = b2) whatever its features."""
    g = NodeGraph.build(X, EI)
    torch.manual_seed(0)
    s = NodeStudent("gat", 3, 2, hidden=4, heads=2, gat_self_loops=self_loops).eval()
    z, h = s(g)
    bias_only = torch.allclose(h[3], s.conv1.bias.relu()) and torch.allclose(z[3], s.conv2.bias)
    assert bias_only is not self_loops
