"""GraphClassifier's model-level parity switches (gfkd.md §8): self-loop edges in the data, none on nodes without
out-edges, dropout on the logits; the dense twin agrees with the sparse model under each (gfkd.md §11, check 10)."""

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

from gfkd.models import DenseTwin, build_classifier
from gfkd.models.classifier import SWITCHES, data_self_loops
from gfkd.models.dense import dense_self_loops

PATH = [[0, 1, 1, 2], [1, 0, 2, 1]]  # 3-node path
ARCS = [[0, 1], [1, 2]]  # directed 0 → 1 → 2: node 2 has no out-edge
# nodes 0-1 an edge, node 2 isolated
PAIR = [[0, 1], [1, 0]]


def _batch(f: int = 3) -> Batch:
    g = torch.Generator().manual_seed(0)
    graphs = [Data(x=torch.randn(3, f, generator=g), edge_index=torch.tensor(e)) for e in (PATH, ARCS, PAIR)]
    return Batch.from_data_list(graphs)


def _copy(model, **switches):
    """The same weights under other switches."""
    cfg = {k: v for k, v in model.config().items() if k not in ("loops_in_data", "skip_isolated", "logit_dropout")}
    twin = build_classifier(cfg.pop("arch"), cfg.pop("in_dim"), cfg.pop("num_classes"), **cfg, **switches)
    twin.load_state_dict(model.state_dict())
    return twin.train(model.training)


@pytest.mark.parametrize("arch", ["gin", "gcn"])
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("train_mode", [False, True])
def test_the_switch_equals_a_clean_model_fed_the_self_loop_edges_sparse_and_dense(arch, skip, train_mode):
    """gfkd.md §11.10: with self_loops_in_data the sparse and dense models equal each other and the model fed
    explicit self-loop edges (for GCN: a layer that takes its loops from the graph)."""
    torch.manual_seed(0)
    b = _batch()
    model = build_classifier(arch, 3, 2, layers=4, hidden=8, dropout=0.0, loops_in_data=True,
                             skip_isolated=skip).train(train_mode)
    x, mask = to_dense_batch(b.x, b.batch)
    adj = to_dense_adj(b.edge_index, b.batch, max_num_nodes=x.size(1)).transpose(1, 2)  # a_ij weighs j → i
    sparse = model(b.x, b.edge_index, b.batch)
    assert torch.allclose(sparse, DenseTwin(model)(x, adj, mask), atol=1e-5)
    fed = _copy(model)  # clean switches, explicit loops in the data
    for conv in fed.convs:
        conv.adds_self_loops = False
    loops = [n for n in range(b.num_nodes) if not skip or n in b.edge_index[0].tolist()]
    ei = torch.cat([b.edge_index, torch.tensor([loops, loops])], 1)
    assert torch.allclose(sparse, fed(b.x, ei, b.batch), atol=1e-6)


def test_gin_counts_a_nodes_own_feature_twice_and_gcn_is_unchanged_without_skip():
    torch.manual_seed(0)
    b = _batch()
    gin = build_classifier("gin", 3, 2, layers=2, hidden=8, loops_in_data=True)
    conv = gin.convs[0]
    ei, _ = data_self_loops(b.edge_index, None, b.num_nodes)
    want = 2 * b.x + torch.zeros_like(b.x).index_add_(0, b.edge_index[1], b.x[b.edge_index[0]])
    assert torch.allclose(conv.aggregate(b.x, ei), want)
    clean = build_classifier("gcn", 3, 2, layers=3, hidden=8).eval()
    looped = _copy(clean, loops_in_data=True)
    assert torch.allclose(clean(b.x, b.edge_index, b.batch), looped(b.x, b.edge_index, b.batch), atol=1e-6)
    skipped = _copy(clean, loops_in_data=True, skip_isolated=True)  # node 2 of the arcs and of the pair differ
    h_clean, h_skip = clean.node_embeddings(b.x, b.edge_index), skipped.node_embeddings(b.x, b.edge_index)
    differs = (h_clean - h_skip).abs().sum(1) > 1e-6
    # only the nodes without out-edges change: 2 of the arcs (index 5, its in-neighbour still counted) and the
    # pair's isolated node 2 (index 8, only its bias left); no other node reads from them
    assert differs.tolist() == [i in (5, 8) for i in range(9)]
    w1 = skipped.convs[0]
    assert torch.allclose(w1.aggregate(b.x, data_self_loops(b.edge_index, None, 9, True)[0])[8], w1.bias)


def test_self_loops_go_only_where_an_out_edge_of_positive_weight_is_under_skip():
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    w = torch.tensor([1.0, 0.5, 0.0])  # node 2's only out-edge has weight 0
    got, gw = data_self_loops(ei, w, 4, skip_isolated=True)
    assert got[:, 3:].tolist() == [[0, 1], [0, 1]] and gw[3:].tolist() == [1.0, 1.0]
    got, gw = data_self_loops(ei, w, 4)
    assert got[:, 3:].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    adj = torch.tensor([[[0.0, 0.0, 0.3], [0.2, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # a_ij weighs j → i
    mask = torch.tensor([[True, True, False]])
    assert dense_self_loops(adj, mask, skip_isolated=True).diagonal(dim1=1, dim2=2).tolist() == [[1.0, 0.0, 0.0]]
    assert dense_self_loops(adj, mask).diagonal(dim1=1, dim2=2).tolist() == [[1.0, 1.0, 0.0]]


def test_logit_dropout_drops_logits_in_training_only():
    torch.manual_seed(0)
    b = _batch()
    model = build_classifier("gin", 3, 2, layers=2, hidden=64, dropout=0.5, logit_dropout=True).train()
    z = model(b.x, b.edge_index, b.batch)
    g = model.embed(b.x, b.edge_index, b.batch)
    zero = z == 0
    assert zero.any()  # a dropped logit is exactly 0; the rest are scaled by 2
    full = model.classifier(g)
    assert torch.allclose(z[~zero], 2 * full[~zero], atol=1e-5)
    model.eval()
    assert torch.allclose(model(b.x, b.edge_index, b.batch), _copy(model).eval()(b.x, b.edge_index, b.batch))


def test_a_switched_model_rebuilds_from_its_config_and_a_clean_one_writes_none():
    clean = build_classifier("gcn", 3, 2, layers=3, hidden=8)
    assert set(SWITCHES) == {"loops_in_data", "skip_isolated", "logit_dropout"}
    assert not set(SWITCHES) & set(clean.config())
    model = build_classifier("gcn", 3, 2, layers=3, hidden=8, loops_in_data=True, skip_isolated=True,
                             logit_dropout=True)
    cfg = model.config()
    again = build_classifier(cfg.pop("arch"), cfg.pop("in_dim"), cfg.pop("num_classes"), **cfg)
    assert (again.loops_in_data, again.skip_isolated, again.logit_dropout) == (True, True, True)
    assert not any(c.adds_self_loops for c in again.convs)
    with pytest.raises(ValueError, match="skip_isolated"):
        build_classifier("gin", 3, 2, skip_isolated=True)
