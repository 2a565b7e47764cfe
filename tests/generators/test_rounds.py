"""Adversarial rounds (acgkd.md §7, schedule = alternate): the saved generators continue from their state, move
against the student, and their re-finalised graphs carry the teacher's fresh verdict."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from gfkd.config import resolve_config
from gfkd.generators import acgkd
from gfkd.generators.base import node_mask
from gfkd.generators.rounds import AdversarialRounds, divergence, student_dense_logits
from gfkd.models.widened import build_student
from gfkd.stages import teacher

from .conftest import make_ctx


def _states(ctx, n_graphs=12, chunks=2):
    out = []
    for c in range(chunks):
        n = torch.randint(4, 9, (n_graphs,), generator=torch.Generator().manual_seed(c))
        y = torch.arange(n_graphs) % ctx.num_classes
        final = acgkd.generate(ctx, n, y, torch.Generator().manual_seed(10 + c))
        out.append(final.state)
    return out


def _student(teacher_dir, kind):
    model, _, _ = teacher.load_teacher(teacher_dir / "teacher.pt")
    spec = {"kind": kind, "arch": "gin", "in_dim": model.in_dim, "num_classes": model.num_classes, "layers": 2,
            "hidden": 8, "dropout": 0.0, "projector": "gat", "pooling": model.pooling}
    torch.manual_seed(0)
    return build_student(spec, model).eval(), model


def _setup(teacher_dir, kind):
    """Saved states of two chunks, a student, the teacher, the generate config and the teacher's metadata."""
    ctx = make_ctx(teacher_dir, "generate.iterations=10")
    student, model = _student(teacher_dir, kind)
    _, meta, bn = teacher.load_teacher(teacher_dir / "teacher.pt")
    return _states(ctx), student, model, resolve_config(None, ["generate.iterations=10"]), meta, bn


@pytest.mark.parametrize("kind", ["plain", "widened"])
def test_the_dense_student_equals_the_sparse_one_on_01_graphs(tiny_teacher_dir, kind):
    student, model = _student(tiny_teacher_dir, kind)
    F_ = model.in_dim
    g = torch.Generator().manual_seed(0)
    n = torch.tensor([5, 7, 3])
    mask = node_mask(n)
    N = mask.size(1)
    upper = torch.triu((torch.rand(3, N, N, generator=g) < 0.4).float(), 1) * (mask[:, :, None] & mask[:, None, :])
    adj = upper + upper.transpose(1, 2)
    x = F.one_hot(torch.randint(0, F_, (3, N), generator=g), F_).float()
    x = x * mask.unsqueeze(-1)
    dense = student_dense_logits(student, x, adj, mask)
    datas = []
    for b in range(3):
        k = int(n[b])
        datas.append(Data(x=x[b, :k], edge_index=adj[b, :k, :k].nonzero().t()))
    batch = Batch.from_data_list(datas)
    sparse = student(batch.x, batch.edge_index, batch.batch, 3)
    assert torch.allclose(dense, sparse, atol=1e-5)


def test_divergences_vanish_on_equal_distributions_and_js_is_bounded():
    p = F.softmax(torch.randn(6, 3), -1)
    q = F.softmax(torch.randn(6, 3), -1)
    for kind in ("js", "kl", "l1"):
        assert float(divergence(p, p, kind)) == pytest.approx(0.0, abs=1e-6)
        assert float(divergence(p, q, kind)) > 0
    assert float(divergence(p, q, "js")) <= torch.log(torch.tensor(2.0)) + 1e-6


def test_rounds_continue_from_the_state_and_push_the_divergence_up(tiny_teacher_dir):
    states, student, model, cfg, meta, bn = _setup(tiny_teacher_dir, "widened")

    def rounds(beta, steps=8):
        return AdversarialRounds(model, meta["data"], bn, cfg.generate, states, steps=steps, beta=beta, div="js",
                                 lr_scale=1.0, seed=0, device=torch.device("cpu"))

    before = {k: v.clone() for k, v in states[0].items()}
    r = rounds(beta=0.0, steps=1)
    assert torch.equal(r.chunks[0].st.alpha.detach(), states[0]["alpha"])  # restored, not re-initialised
    graphs, terms = r.step(student)
    assert all(torch.equal(before[k], states[0][k]) for k in before)  # the saved state is not modified in place
    assert len(graphs) == 24 and r.generator_steps == 2 and set(terms) == {"ce", "bn", "div"}
    assert any(g.edge_index.numel() for g in graphs)
    for g in graphs:  # fresh verdicts of the teacher on the graphs handed back
        z = model(g.x, g.edge_index, torch.zeros(g.num_nodes, dtype=torch.long), 1)
        assert torch.allclose(z, g.teacher_logits, atol=1e-4)
        assert g.edge_index.numel() == 0 or g.edge_index.max() < g.num_nodes
    grads = [p.requires_grad for p in student.parameters()]
    push, hold = rounds(beta=50.0), rounds(beta=0.0)
    d_push = [push.step(student)[1]["div"] for _ in range(3)]
    d_hold = [hold.step(student)[1]["div"] for _ in range(3)]
    assert d_push[-1] > d_hold[-1]  # maximising D(p_T ‖ p_S) moves the graphs to where they disagree
    assert [p.requires_grad for p in student.parameters()] == grads  # the student is handed back as it came


@pytest.mark.parametrize("mode", ["budget", "lowrank"])
def test_rounds_restore_budget_and_lowrank_generators(tiny_teacher_dir, mode):
    over = ["generate.iterations=5", f"generate.acgkd.xi_mode={mode}", "generate.acgkd.xi=0.4"]
    ctx = make_ctx(tiny_teacher_dir, *over)
    states = _states(ctx, n_graphs=6, chunks=1)
    student, model = _student(tiny_teacher_dir, "plain")
    _, meta, bn = teacher.load_teacher(tiny_teacher_dir / "teacher.pt")
    r = AdversarialRounds(model, meta["data"], bn, resolve_config(None, over).generate, states, steps=2, beta=1.0,
                          div="js", lr_scale=1.0, seed=0, device=torch.device("cpu"))
    c = r.chunks[0]
    if mode == "budget":  # the same candidate pairs as the generator that saved the state
        assert torch.equal(c.st.cand, states[0]["candidates"])
    else:
        assert torch.equal(c.st.z.detach(), states[0]["z"])
    before = [p.detach().clone() for p in c.st.params]
    graphs, terms = r.step(student)
    assert len(graphs) == 6 and all(math.isfinite(v) for v in terms.values())
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, c.st.params))  # the generator moved


def test_resample_redraws_fresh_graphs_from_a_generator_that_never_moves(tiny_teacher_dir):
    """distill.resample = AdversarialRounds with steps = 0 (acgkd.md §11): new hard samples, the same parameters."""
    states, student, model, cfg, meta, bn = _setup(tiny_teacher_dir, "plain")
    r = AdversarialRounds(model, meta["data"], bn, cfg.generate, states, steps=0, beta=1.0, div="js", lr_scale=1.0,
                          seed=0, device=torch.device("cpu"), key="distill.resample")
    first, terms = r.step(student)
    second, _ = r.step(student)
    assert terms == {} and r.generator_steps == 0
    assert torch.equal(r.chunks[0].st.alpha.detach(), states[0]["alpha"])  # the generator did not move
    assert [g.num_nodes for g in first] == [g.num_nodes for g in second]  # the same graphs' node counts and targets
    assert [int(g.y) for g in first] == [int(g.y) for g in second]
    assert any(a.edge_index.shape != b.edge_index.shape or not torch.equal(a.edge_index, b.edge_index)
               for a, b in zip(first, second))  # but a fresh draw of their edges


def test_an_unreadable_generator_state_is_named_with_the_fix(tmp_path):
    import json

    from gfkd.errors import StageError
    from gfkd.generators.rounds import load_states
    from gfkd.generators.base import state_name

    (tmp_path / "_manifest.json").write_text(json.dumps({"generator": "acgkd"}))
    (tmp_path / "shard-b00-c000.parquet").write_bytes(b"")
    (tmp_path / state_name("shard-b00-c000.parquet")).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(StageError, match=r"generator state .*_state-b00-c000\.pt is unreadable .*--force generate"):
        load_states(tmp_path)
