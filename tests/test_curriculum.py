"""Curriculum over pseudo-graphs (acgkd.md §10, §13.11)."""

import math

import pytest
import torch

from gfkd.curriculum import easiest, pace, size_rank, teacher_entropy, teacher_margin


@pytest.mark.parametrize("kind", ["linear", "root", "step"])
def test_pace_is_monotone_and_complete_from_E_c(kind):
    qs = [pace(e, kind, 0.3, 10) for e in range(25)]
    assert qs[0] == pytest.approx(0.3)
    assert all(b >= a for a, b in zip(qs, qs[1:]))
    assert all(q == 1.0 for q in qs[10:])


@pytest.mark.parametrize("q0", [0.1, 0.01])
def test_step_pace_with_a_small_q0_still_admits_every_graph_from_E_c(q0):
    assert pace(9, "step", q0, 10) < 1.0 and pace(10, "step", q0, 10) == 1.0  # 8·q0 < 1 at E_c without the rule


def test_off_admits_every_graph():
    assert all(pace(e, "off", 0.3, 10) == 1.0 for e in range(5))


def test_easiest_takes_the_smallest_with_graph_id_ties():
    d = torch.tensor([0.5, 0.1, 0.5, 0.9, 0.1])
    ids = torch.tensor([10, 11, 12, 13, 4])
    assert easiest(d, ids, 0.6).tolist() == [4, 1, 0]  # 0.1 (id 4), 0.1 (id 11), 0.5 (id 10)
    assert easiest(d, ids, 1.0).numel() == 5
    sizes = [easiest(d, ids, pace(e, "linear", 0.3, 4)).numel() for e in range(6)]
    assert sizes == sorted(sizes) and sizes[-1] == 5


def test_difficulty_measures():
    logits = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
    ent = teacher_entropy(logits)
    assert ent[0] < 1e-6 and ent[1] == pytest.approx(1.0)
    assert teacher_margin(logits).tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    r = size_rank(torch.tensor([5, 3, 9]), torch.tensor([4, 2, 20]))
    assert r.tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert math.isclose(float(teacher_entropy(torch.zeros(1, 4))), 1.0, rel_tol=1e-6)


# acgkd.md §10 pinned by value (a mutation audit: each change below left every test passing)

def test_pacing_formulas_by_value():
    """linear p = 1, root p = ½: q_e = q_0 + (1 − q_0)·(e/E_c)^p; step: q_0·2^⌊3e/E_c⌋."""
    assert pace(5, "linear", 0.3, 10) == pytest.approx(0.65)
    assert pace(5, "root", 0.3, 10) == pytest.approx(0.3 + 0.7 * math.sqrt(0.5))
    assert [pace(e, "step", 0.1, 10) for e in (0, 3, 4, 7, 9, 10)] == pytest.approx([0.1, 0.1, 0.2, 0.4, 0.4, 1.0])


def test_the_admitted_count_rounds_up():
    """⌈q_e·M⌉ graphs: 0.35 of 10 admits 4."""
    assert easiest(torch.arange(10.0), torch.arange(10), 0.35).numel() == 4


def test_student_kl_is_kl_of_the_teacher_from_the_student():
    """d_g = KL(p_T^τ ‖ p_S^τ) (not the reverse), on logits where the two directions differ."""
    from gfkd.curriculum import student_kl

    z_t, z_s = torch.tensor([[4.0, 0.0, -2.0]]), torch.tensor([[0.0, 1.0, 0.5]])
    log_pt, log_ps = torch.log_softmax(z_t / 2, -1), torch.log_softmax(z_s / 2, -1)
    expected = torch.nn.functional.kl_div(log_ps, log_pt, log_target=True, reduction="none").sum(-1)
    reverse = torch.nn.functional.kl_div(log_pt, log_ps, log_target=True, reduction="none").sum(-1)
    assert not torch.allclose(expected, reverse)
    torch.testing.assert_close(student_kl(z_t, z_s, 2.0), expected)
