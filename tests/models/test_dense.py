"""Sparse/dense equivalence: the dense twin uses the same parameters and agrees on 0/1 graphs (PyG's
test_dense_gin_conv pattern: same weights, padded rows exactly zero, allclose)."""

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

from gfkd.models import DenseTwin, build_classifier

PATH = [[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]  # 4-node path
TRIANGLE = [[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]]
STAR = [[0, 1, 0, 2, 0, 3, 0, 4], [1, 0, 2, 0, 3, 0, 4, 0]]


def _batch(f: int = 3) -> Batch:
    g = torch.Generator().manual_seed(0)
    graphs = [Data(x=torch.randn(n, f, generator=g), edge_index=torch.tensor(e))
              for n, e in ((4, PATH), (3, TRIANGLE), (5, STAR))]
    graphs.append(Data(x=torch.randn(2, f, generator=g), edge_index=torch.empty(2, 0, dtype=torch.long)))  # no edges
    return Batch.from_data_list(graphs)


@pytest.mark.parametrize("arch", ["gin", "gcn"])
@pytest.mark.parametrize("pooling", ["sum", "mean"])
@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("in_dim", [3, 12])  # 12 > hidden: GIN applies its first Linear before aggregating
def test_dense_twin_equals_sparse_on_binary_graphs(arch, pooling, train_mode, in_dim):
    torch.manual_seed(0)
    b = _batch(in_dim)
    model = build_classifier(arch, in_dim, 2, layers=4, hidden=8, pooling=pooling, dropout=0.0)
    model.train(train_mode)  # in train mode BN uses batch statistics: the same real nodes in both paths
    x, mask = to_dense_batch(b.x, b.batch)  # [B, N, F], [B, N]
    adj = to_dense_adj(b.edge_index, b.batch, max_num_nodes=x.size(1))  # [B, N, N]
    twin = DenseTwin(model)
    assert torch.allclose(model(b.x, b.edge_index, b.batch), twin(x, adj, mask), atol=1e-5)
    h_dense = twin.node_embeddings(x, adj, mask)
    assert torch.allclose(model.node_embeddings(b.x, b.edge_index), h_dense[mask], atol=1e-5)
    assert torch.all(h_dense[~mask] == 0)  # padded rows exactly zero
    assert twin.model is model and len(list(twin.parameters())) == len(list(model.parameters()))


@pytest.mark.parametrize("arch", ["gin", "gcn"])
def test_gradient_reaches_soft_adjacency(arch):
    torch.manual_seed(0)
    b = _batch()
    model = build_classifier(arch, 3, 2, layers=3, hidden=8).eval()
    x, mask = to_dense_batch(b.x, b.batch)
    adj = torch.rand(x.size(0), x.size(1), x.size(1))
    adj = ((adj + adj.transpose(1, 2)) / 2 * (1 - torch.eye(x.size(1)))).requires_grad_()
    DenseTwin(model)(x, adj, mask)[:, 0].sum().backward()
    real_pairs = mask.unsqueeze(1) & mask.unsqueeze(2) & ~torch.eye(x.size(1), dtype=torch.bool)
    assert adj.grad[real_pairs].abs().sum() > 0
    if arch == "gcn":  # Â sets the diagonal to 1: no gradient through it
        assert torch.all(adj.grad.diagonal(dim1=1, dim2=2) == 0)


def test_residual_and_depth_follow_arch_l_h():
    m = build_classifier("gin", 7, 2, layers=5, hidden=128)
    assert len(m.convs) == 4 and m.classifier.in_features == 128
    assert m.config() == {"arch": "gin", "in_dim": 7, "num_classes": 2, "layers": 5, "hidden": 128,
                          "pooling": "sum", "bn": True, "residual": True, "dropout": 0.5}
    no_bn = build_classifier("gcn", 7, 2, layers=3, hidden=16, bn=False)
    assert not any(isinstance(mod, torch.nn.BatchNorm1d) for mod in no_bn.modules())


@pytest.mark.parametrize("arch", ["gin", "gcn"])
def test_weighted_sparse_with_unit_weights_equals_sparse_and_dense_float64(arch):
    torch.manual_seed(0)
    b = _batch()
    b.x = b.x.double()
    model = build_classifier(arch, 3, 2, layers=4, hidden=8).double().eval()
    ones = torch.ones(b.edge_index.size(1), dtype=torch.float64)
    sparse = model(b.x, b.edge_index, b.batch)
    weighted = model(b.x, b.edge_index, b.batch, edge_weight=ones)
    x, mask = to_dense_batch(b.x, b.batch)
    dense = DenseTwin(model)(x, to_dense_adj(b.edge_index, b.batch, max_num_nodes=x.size(1)).double(), mask)
    assert torch.allclose(sparse, weighted, atol=1e-9) and torch.allclose(sparse, dense, atol=1e-9)
    half = model(b.x, b.edge_index, b.batch, edge_weight=ones * 0.5)
    assert not torch.allclose(half, sparse)  # weights do enter the aggregation


def test_narrowing_gin_layer_is_the_same_map():
    torch.manual_seed(0)
    from gfkd.models.gin import GINLayer

    layer = GINLayer(12, 4).eval()
    assert layer.narrow
    x, ei = torch.randn(5, 12), torch.tensor(STAR)
    agg = x + torch.zeros(5, 12).index_add(0, ei[1], x[ei[0]])
    reference = layer.norm(layer.mlp(agg)).relu()  # aggregate first, then the whole MLP
    assert torch.allclose(layer.update(layer.aggregate(x, ei)), reference, atol=1e-5)
