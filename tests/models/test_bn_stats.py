import torch
from torch_geometric.data import Batch, Data

from gfkd.models import build_classifier
from gfkd.models.bn_stats import bn_input_statistics, bn_layers


def test_bn_input_statistics_match_captured_inputs():
    torch.manual_seed(0)
    graphs = [Data(x=torch.randn(n, 3), edge_index=torch.tensor([[0, 1], [1, 0]])) for n in (3, 4, 5)]
    model = build_classifier("gin", 3, 2, layers=3, hidden=4)
    batches = [Batch.from_data_list(graphs[:2]), Batch.from_data_list(graphs[2:])]
    stats = bn_input_statistics(model, batches, torch.device("cpu"))
    assert model.training  # the caller's mode is restored
    names = list(bn_layers(model))
    assert len(names) == 4 and set(stats) == {f"{n}.{s}" for n in names for s in ("mean", "var")}
    captured = []
    h = bn_layers(model)[names[-1]].register_forward_pre_hook(lambda m, i: captured.append(i[0]))
    model.eval()
    big = Batch.from_data_list(graphs)
    model(big.x, big.edge_index, big.batch)
    h.remove()
    x = captured[0]
    assert torch.allclose(stats[f"{names[-1]}.mean"], x.mean(0), atol=1e-5)
    assert torch.allclose(stats[f"{names[-1]}.var"], x.var(0, unbiased=False), atol=1e-5)
