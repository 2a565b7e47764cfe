"""The widened student reusing the teacher's frozen classifier (acgkd.md §8, §13.9)."""

import torch
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from conftest import path_graphs
from gfkd.config import resolve_config
from gfkd.distillation import distill_student
from gfkd.models import build_classifier
from gfkd.models.widened import WidenedStudent, build_student


def _teacher():
    torch.manual_seed(1)
    return build_classifier("gin", 3, 2, layers=3, hidden=8).eval()


def test_logits_are_the_teacher_head_on_pooled_projected_embeddings():
    teacher = _teacher()
    student = WidenedStudent(build_classifier("gin", 3, 2, layers=2, hidden=4), teacher, "gat").eval()
    b = Batch.from_data_list(path_graphs(4))
    z, h = student.features(b.x, b.edge_index, b.batch, b.num_graphs)
    expect = scatter(h, b.batch, dim=0, reduce="sum") @ teacher.classifier.weight.T + teacher.classifier.bias
    assert h.shape == (b.num_nodes, 8) and torch.allclose(z, expect, atol=1e-6)


def test_reused_head_is_frozen_absent_from_the_optimiser_and_unchanged_after_an_epoch():
    teacher = _teacher()
    spec = {"kind": "widened", "arch": "gin", "in_dim": 3, "num_classes": 2, "layers": 2, "hidden": 4,
            "dropout": 0.5, "projector": "gat"}
    student = build_student(spec, teacher)
    w0, b0 = student.head.weight.clone(), student.head.bias.clone()
    body0 = student.convs[0].mlp[0].weight.clone()
    dc = resolve_config(None, ["distill.curriculum.pace=off"]).distill
    distill_student(student, teacher, path_graphs(), dc, epochs=2, seed=0, device=torch.device("cpu"))
    assert not student.head.weight.requires_grad and not student.head.bias.requires_grad
    assert torch.equal(student.head.weight, w0) and torch.equal(student.head.bias, b0)
    assert torch.equal(w0, teacher.classifier.weight)
    assert not torch.equal(student.convs[0].mlp[0].weight, body0)  # the body did learn
    assert student.param_counts()["head"] == 8 * 2 + 2


def test_linear_projector_and_plain_student_shapes():
    teacher = _teacher()
    b = Batch.from_data_list(path_graphs(3))
    lin = WidenedStudent(build_classifier("gcn", 3, 2, layers=2, hidden=4), teacher, "linear").eval()
    assert lin(b.x, b.edge_index, b.batch, b.num_graphs).shape == (3, 2)
    plain = build_student({"kind": "plain", "arch": "gcn", "in_dim": 3, "num_classes": 2, "layers": 2,
                           "hidden": 4, "dropout": 0.5, "projector": "gat"})
    z, h = plain.features(b.x, b.edge_index, b.batch, b.num_graphs)
    assert z.shape == (3, 2) and h is None and plain.param_counts()["projector"] == 0


def test_the_gat_projector_is_gat_bn_relu_over_the_graph_with_four_heads():
    """acgkd.md §8: P = GAT over the same graph (4 heads of width d_T/4, concatenated; 1 head when 4 ∤ d_T) → BN →
    ReLU (a mutation audit: dropping the ReLU, using 1 head or no edges left every test passing)."""
    from gfkd.models.widened import Projector

    torch.manual_seed(0)
    assert Projector("gat", 6, 8).conv.heads == 4 and Projector("gat", 6, 10).conv.heads == 1
    p = Projector("gat", 6, 8).train()
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    h = torch.randn(3, 6)
    out = p(h, path)
    assert out.shape == (3, 8) and (out >= 0).all() and (out == 0).any()
    p.eval()
    moved = h.clone()
    moved[2] += 5.0  # node 2 is node 1's neighbour, not node 0's
    a, b = p(h, path), p(moved, path)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
