"""The distillation loop: the adversarial temperature's wiring (acgkd.md §9) and the evaluation callback that feeds
nothing back (protocol.md §8.3–4)."""

import math

import pytest
import torch
from torch_geometric.data import Batch

from conftest import path_graphs
from gfkd.config import resolve_config
from gfkd.distillation import distill_student
from gfkd.models import build_classifier
from gfkd.models.widened import build_student


def _taus(*overrides: str) -> list[float]:
    torch.manual_seed(1)
    teacher = build_classifier("gin", 3, 2, layers=3, hidden=8).eval()
    spec = {"kind": "widened", "arch": "gin", "in_dim": 3, "num_classes": 2, "layers": 2, "hidden": 4,
            "dropout": 0.5, "projector": "gat"}
    dc = resolve_config(None, ["distill.curriculum.pace=off", *overrides]).distill
    res = distill_student(build_student(spec, teacher), teacher, path_graphs(), dc, epochs=4, seed=0,
                          device=torch.device("cpu"))
    return [h["distill/train/tau"] for h in res.history]


def test_the_ramp_lets_the_temperature_move_after_a_silent_first_epoch():
    taus = _taus()  # the default: adversarial, λ ramps from 0 over distill.temperature.ramp_epochs
    assert taus[0] == pytest.approx(2.0)  # λ_0 = 0: t's learning rate is 0 during the first epoch
    # from the second epoch on, t is trained (against the student); how far it gets in 3 epochs of one batch (about
    # 1e-3 here) depends on the student's whole trajectory, so only the move is asserted
    assert taus[-1] != pytest.approx(2.0, abs=1e-6)


def test_a_silent_adversary_keeps_the_initial_temperature_in_the_loop():
    assert _taus("distill.temperature.lambda_max=0") == pytest.approx([2.0] * 4)


def _distill(evaluate):
    torch.manual_seed(1)
    teacher = build_classifier("gin", 3, 2, layers=3, hidden=8).eval()
    spec = {"kind": "widened", "arch": "gin", "in_dim": 3, "num_classes": 2, "layers": 2, "hidden": 4,
            "dropout": 0.5, "projector": "gat"}
    dc = resolve_config(None, []).distill  # the default recipe: curriculum, adversarial temperature
    return distill_student(build_student(spec, teacher), teacher, path_graphs(), dc, epochs=4, seed=0,
                           device=torch.device("cpu"), evaluate=evaluate)


def _callback(test_acc: list[float]):
    """Scores the student on held-out graphs as the stage's callback does, with fixed validation losses (best: epoch
    1) and the given test accuracies; checks it runs without autograd on a student in eval mode."""
    val = [0.9, 0.4, 0.6, 0.5]
    held_out = Batch.from_data_list(path_graphs()[:6])
    epoch = []

    def evaluate(student):
        assert not torch.is_grad_enabled() and not student.training
        student(held_out.x, held_out.edge_index, held_out.batch, held_out.num_graphs)  # a real forward, as the stage's callback makes
        epoch.append(len(epoch))
        return {"distill/val/loss": val[epoch[-1]], "distill/val/acc": 0.5, "distill/test/acc": test_acc[epoch[-1]]}

    return evaluate


def test_the_evaluation_callback_feeds_nothing_back_and_only_validation_selects():
    """protocol.md §8.3–4: with or without the callback the training is bitwise the same (optimiser, curriculum,
    temperature, last epoch), and other test accuracies (permuted test labels) select the same epoch."""
    alone = _distill(None)
    runs = [_distill(_callback([0.1, 0.9, 0.2, 0.3])), _distill(_callback([0.9, 0.1, 0.8, 0.7]))]
    train = lambda res: [{k: v for k, v in h.items() if "/train/" in k} for h in res.history]  # noqa: E731
    for res in runs:
        assert all(torch.equal(res.last_state[k], v) for k, v in alone.last_state.items())
        assert train(res) == train(alone)
        assert res.best_epoch == 1
    assert all(torch.equal(runs[0].best_state[k], v) for k, v in runs[1].best_state.items())
    assert alone.best_epoch == 3  # no validation: the last epoch


def test_the_size_measure_counts_a_directed_graphs_edges_once_each():
    """acgkd.md §10's size d_g = n_g + |E_g|: a symmetric graph's edges are stored twice and count once, a directed
    one's (GFKD's banks) count as stored. A 3-node path (n + |E| = 5) is easier than a directed 3-cycle (6)."""
    from torch_geometric.data import Data

    from gfkd.distillation import graph_difficulty, num_edges

    path = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3)
    cycle = Data(edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]), num_nodes=3)
    assert (num_edges(path), num_edges(cycle)) == (2, 3)
    assert graph_difficulty([cycle, path], "size").tolist() == [1.0, 0.0]


def test_the_feature_loss_is_the_squared_distance_per_node_and_per_teacher_dimension():
    """acgkd.md §8: L_feat = (1/Σ n_g) Σ_i ‖P(H_S)_i − H_T,i‖² / d_T at node level; at graph level the mean over graphs
    of ‖mean_i P(H_S)_i − mean_i H_T,i‖² / d_T."""
    from gfkd.distillation import feature_loss

    h_t = torch.zeros(3, 2)
    h_s = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # squared distances 1, 4, 9
    batch = torch.tensor([0, 0, 1])
    assert feature_loss(h_s, h_t, batch, 2, "node").item() == pytest.approx((1 + 4 + 9) / (3 * 2))
    # graph 0: mean (0.5, 1) → 1.25; graph 1: (3, 0) → 9
    assert feature_loss(h_s, h_t, batch, 2, "graph").item() == pytest.approx((1.25 + 9) / 2 / 2)


def test_the_loop_trains_as_acgkd_md_11_says(monkeypatch):
    """acgkd.md §8-§11 in the loop (a mutation audit: each of these changes left every test passing): Adam at
    distill.lr without weight decay, its lr falling linearly over the epochs; the student in train mode at every step;
    the feature loss against the teacher's node embeddings, weighed by γ; epoch 0 on the easiest ⌈q_0·M⌉ graphs."""
    import gfkd.distillation as dist

    torch.manual_seed(1)
    teacher = build_classifier("gin", 3, 2, layers=3, hidden=8).eval()
    spec = {"kind": "widened", "arch": "gin", "in_dim": 3, "num_classes": 2, "layers": 2, "hidden": 4,
            "dropout": 0.5, "projector": "gat"}
    student = build_student(spec, teacher)
    dc = resolve_config(None, ["distill.feat_weight=0.5", "distill.batch_size=4"]).distill
    graphs = path_graphs(12)
    made, steps, feats, epoch0 = [], [], [], []
    real_adam, real_loader, real_feat = torch.optim.Adam, dist.DataLoader, dist.feature_loss

    class Adam(real_adam):
        def __init__(self, params, **kw):
            self.is_student = not made  # the first one made: the student's (then the temperature's)
            made.append(kw)
            super().__init__(params, **kw)

        def step(self, closure=None):
            if self.is_student:
                steps.append((self.param_groups[0]["lr"], student.training))
            return super().step(closure)

    def loader(data, **kw):
        if not epoch0:
            epoch0.append(sorted(int(g.graph_id) for g in data))
        return real_loader(data, **kw)

    def feat(h_s, h_t, *a):
        feats.append((h_t.requires_grad, torch.equal(h_t, h_s.detach()), h_t.size(-1)))
        return real_feat(h_s, h_t, *a)

    monkeypatch.setattr(torch.optim, "Adam", Adam)
    monkeypatch.setattr(dist, "DataLoader", loader)
    monkeypatch.setattr(dist, "feature_loss", feat)
    res = distill_student(student, teacher, graphs, dc, epochs=4, seed=0, device=torch.device("cpu"))
    assert made[0] == {"lr": dc.lr}  # the student's: no weight decay
    lrs = [lr for i, (lr, _) in enumerate(steps) if i == 0 or lr != steps[i - 1][0]]  # one per epoch, in order
    assert lrs == pytest.approx([dc.lr * (1 - e / 4) for e in range(4)])
    assert steps and all(training for _, training in steps)
    assert feats and all(not grad and not same and width == 8 for grad, same, width in feats)
    for h in res.history:
        assert h["distill/train/feat"] > 0
        assert h["distill/train/loss"] == pytest.approx(h["distill/train/kd"] + 0.5 * h["distill/train/feat"], rel=1e-5)
    difficulty = dist.graph_difficulty(graphs, dc.curriculum.measure)
    k = math.ceil(dc.curriculum.q0 * 12)
    assert epoch0[0] == sorted(int(graphs[i].graph_id) for i in difficulty.argsort(stable=True)[:k].tolist())


def test_selection_ties_go_to_the_higher_validation_accuracy_then_the_earlier_epoch():
    """protocol.md §4: the lowest validation loss; ties by the higher validation accuracy, then the earlier epoch; the
    test accuracy never enters (a mutation audit: `<=` for `<`, or the test accuracy as the tie-break, passed)."""

    def callback(val_loss, val_acc, test_acc):
        epoch: list[int] = []

        def evaluate(student):
            epoch.append(len(epoch))
            e = epoch[-1]
            return {"distill/val/loss": val_loss[e], "distill/val/acc": val_acc[e], "distill/test/acc": test_acc[e]}

        return evaluate

    assert _distill(callback([0.5, 0.4, 0.4, 0.4], [0.5, 0.6, 0.6, 0.6], [0.5, 0.1, 0.2, 0.9])).best_epoch == 1
    assert _distill(callback([0.5, 0.4, 0.4, 0.6], [0.5, 0.6, 0.7, 0.9], [0.5, 0.9, 0.1, 0.9])).best_epoch == 2
