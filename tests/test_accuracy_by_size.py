"""benchmarks/accuracy_by_size.py: accuracy and teacher agreement per node-count bucket, pooled over cells and seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("accuracy_by_size", REPO / "benchmarks" / "accuracy_by_size.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_bucket_names_cover_every_size():
    assert bench.bucket_names([15, 25]) == ["n < 15", "15 ≤ n < 25", "n ≥ 25"]


def test_table_pools_seeds_and_cells_per_bucket():
    # cell 1: sizes 10, 20, 30; labels 0 1 1; the teacher says 0 1 0
    c1 = {"n": np.array([10, 20, 30]), "y": np.array([0, 1, 1]), "teacher": [np.array([0, 1, 0])],
          "ACGKD": [np.array([0, 0, 1]), np.array([1, 1, 1])]}
    # cell 2: one small graph, label 1; the teacher is right, the student wrong
    c2 = {"n": np.array([12]), "y": np.array([1]), "teacher": [np.array([1])], "ACGKD": [np.array([0])]}
    names, res, counts = bench.table([c1, c2], [15, 25])
    assert names == ["n < 15", "15 ≤ n < 25", "n ≥ 25"] and counts == [2, 1, 1]
    # small bucket: c1 seeds predict 0 (right, agrees) and 1 (wrong, disagrees); c2 predicts 0 (wrong, disagrees)
    assert res["ACGKD"][0] == (1 / 3, 1 / 3)
    assert res["ACGKD"][1] == (0.5, 0.5)  # size 20: seed 0 wrong, seed 1 right; the teacher said 1
    assert res["ACGKD"][2] == (1.0, 0.0)  # size 30: both right, both against the teacher's 0
    assert res["teacher"] == [(1.0, 1.0), (1.0, 1.0), (0.0, 1.0)]
    assert "RandG" not in res  # no checkpoints, no row


def test_table_keeps_extra_rows_of_other_folders():
    c = {"n": np.array([10, 30]), "y": np.array([0, 1]), "teacher": [np.array([0, 1])], "density": {},
         "ACGKD": [np.array([0, 0])], "ACGKD, size-coupled degrees": [np.array([0, 1])]}
    _, res, _ = bench.table([c], [15])
    assert list(res) == ["teacher", "ACGKD", "ACGKD, size-coupled degrees"]
    assert res["ACGKD, size-coupled degrees"][1] == (1.0, 1.0) and res["ACGKD"][1] == (0.0, 0.0)


def test_top_shares_give_each_prediction_its_most_predicted_class_share():
    c1 = {"n": np.array([10, 20, 30, 40]), "y": np.array([0, 1, 1, 0]), "teacher": [np.array([0, 0, 0, 1])],
          "density": {}, "ACGKD": [np.array([1, 1, 1, 1]), np.array([0, 1, 0, 1])]}
    c2 = {"n": np.array([12, 13]), "y": np.array([1, 1]), "teacher": [np.array([1, 1])], "density": {},
          "ACGKD": [np.array([0, 1])]}
    assert bench.top_shares([c1, c2]) == {"teacher": [0.75, 1.0], "ACGKD": [1.0, 0.5, 0.5]}


def test_graphs_all_scores_every_graph_of_the_dataset(tiny_root, tiny_teacher_dir, tmp_path):
    """--graphs all: every graph of the dataset, not the fold's test graphs (a cell with a teacher and nothing else)."""
    root = tiny_teacher_dir.parent
    test = bench.cell_predictions(root, tiny_root, tmp_path / "cache")
    every = bench.cell_predictions(root, tiny_root, tmp_path / "cache", graphs="all")
    assert len(every["y"]) == 40 and len(test["y"]) < 40  # TINY has 40 graphs; a CV fold tests on a tenth
    assert len(every["teacher"][0]) == 40 and bench._models(every) == ["teacher"]


def test_by_class_says_which_way_the_errors_lean():
    # labels 0 1 1 1 over two cells, two student seeds each: its errors all call a class-1 graph class 0
    c1 = {"y": np.array([0, 1]), "teacher": [np.array([0, 1])], "ACGKD": [np.array([0, 0]), np.array([0, 1])]}
    c2 = {"y": np.array([1, 1]), "teacher": [np.array([1, 0])], "ACGKD": [np.array([0, 1]), np.array([1, 1])]}
    true_share, res = bench.by_class([c1, c2])
    assert true_share == [0.25, 0.75]
    assert res["ACGKD"] == ([0.5, 0.5], [1.0, 4 / 6])  # 4 of 8 predictions are 0 (true: 1 in 4); class 1 recalled 4 of 6
    assert res["teacher"] == ([0.5, 0.5], [1.0, 2 / 3])


def test_teacher_class_agreement_sets_the_bank_beside_the_real_graphs():
    # one cell, two seeds: on the bank the student follows the teacher in both classes; on the real graphs it
    # misses half of the teacher's class-1 graphs
    bank = (np.array([0, 0, 1, 1]), [np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])])
    cell = {"y": np.array([0, 1, 1]), "teacher": [np.array([0, 1, 1])], "ACGKD": [np.array([0, 0, 1]),
                                                                                 np.array([0, 1, 0])],
            "bank": {"ACGKD": bank}}
    res = bench.teacher_class_agreement([cell])
    assert res == {"ACGKD": [(0.75, 1.0), (1.0, 0.5)]}
    assert bench._models(cell) == ["teacher", "ACGKD"]  # the banks are no row of their own


def test_teacher_confidence_split_compares_followed_and_missed_graphs():
    cell = {"y": np.array([0, 1, 1]), "teacher": [np.array([0, 1, 1])], "teacher_p": np.array([0.9, 0.6, 0.8]),
            "ACGKD": [np.array([0, 0, 1]), np.array([0, 0, 1])], "bank": {"ACGKD": (np.array([0]), [np.array([0])])}}
    res = bench.teacher_confidence_split([cell])
    followed, missed, n_followed, n_missed = res["ACGKD"][0]
    assert followed == 0.9 and np.isnan(missed) and (n_followed, n_missed) == (2, 0)
    assert res["ACGKD"][1] == (0.8, 0.6, 2, 2)  # both seeds miss the unsure class-1 graph, follow the confident one
    assert bench._models(cell) == ["teacher", "ACGKD"]
