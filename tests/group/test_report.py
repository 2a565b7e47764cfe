"""The three honest numbers (oad.md §8, §10 item 8): selection on validation, never on test."""

import numpy as np
import pytest
import torch

from gfkd.group.report import ensemble_probs, group_numbers, markdown_table, select_epoch, summarize


def test_validation_best_student_is_reported_not_the_test_best():
    # epoch 1 has the highest mean validation accuracy; there student 0 is best on validation, student 2 on test
    val = np.array([[0.50, 0.50, 0.50], [0.80, 0.70, 0.60], [0.60, 0.60, 0.60]])
    test = np.array([[0.90, 0.90, 0.90], [0.70, 0.75, 0.95], [0.60, 0.60, 0.60]])
    ens = np.array([0.1, 0.81, 0.2])
    r = group_numbers(val, test, ens)
    assert r["epoch"] == 1 and r["best_val_student"] == 0
    assert r["val_best_student"] == 0.70 and r["val_best_student"] != test[1].max()
    assert r["mean_students"] == np.mean([0.70, 0.75, 0.95]) and r["ensemble"] == 0.81


def test_ties_pick_the_earliest_epoch_and_the_lowest_student():
    val = np.array([[0.5, 0.7], [0.7, 0.5], [0.6, 0.6]])
    assert select_epoch(val) == 0 and select_epoch(val, start=1) == 1
    assert group_numbers(val, val, np.zeros(3))["best_val_student"] == 1  # epoch 0: student 1 has 0.7
    assert group_numbers(np.full((2, 3), 0.5), np.ones((2, 3)), np.zeros(2))["best_val_student"] == 0


def test_ensemble_probabilities_sum_to_one_and_average_the_softmaxes():
    z = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))
    p = ensemble_probs(z)
    torch.testing.assert_close(p.sum(-1), torch.ones(6))
    torch.testing.assert_close(p, sum(z[k].softmax(-1) for k in range(4)) / 4)


def test_summary_over_seeds_and_table():
    seeds = [{"mean_students": 0.8, "val_best_student": 0.82, "ensemble": 0.83},
             {"mean_students": 0.6, "val_best_student": 0.62, "ensemble": 0.63}]
    s = summarize(seeds)
    assert s["mean_students"] == {"mean": pytest.approx(0.7), "std": pytest.approx(0.1), "n": 2}
    assert s["ensemble"] == {"mean": pytest.approx(0.73), "std": pytest.approx(0.1), "n": 2}
    table = markdown_table([("OAD", s), ("PubMed", None)], note="—, not available offline")
    assert "| OAD | 70.00 ± 10.00 | 72.00 ± 10.00 | 73.00 ± 10.00 | 2 |" in table
    assert "| PubMed | — | — | — | —, not available offline |" in table
