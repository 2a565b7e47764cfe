"""The benchmark table: which metric each method reads, how splits and generators are counted."""

from __future__ import annotations

import pytest

from gfkd.benchmark import METHODS, CellResult, aggregate, fold_hash_mismatches, markdown_table, table_metrics


def test_evaluate_metrics_win_and_generator_free_rows_count_each_split_once():
    cells = [
        CellResult("MUTAG", "acgkd", 0, {"teacher/test/acc": 0.9, "evaluate/test/acc_teacher": 0.8,
                                         "distill/test/acc": 0.6}),
        CellResult("MUTAG", "randg", 0, {"teacher/test/acc": 0.9, "evaluate/test/acc_teacher": 0.8,
                                         "distill/test/acc": 0.5}),
        CellResult("MUTAG", "acgkd", 1, {"teacher/test/acc": 0.7, "distill/test/acc": 0.7}),
    ]
    rows = {(r.method, r.generator): r for r in aggregate(cells)}
    assert set(rows) == {("teacher", None), ("pseudo", "acgkd"), ("pseudo", "randg")}
    teacher = rows[("teacher", None)]
    assert teacher.values == (0.8, 0.7) and teacher.splits == (0, 1) and teacher.runs == 3 and teacher.n == 2
    assert teacher.mean == pytest.approx(0.75) and teacher.std == pytest.approx(0.05)  # population std
    assert rows[("pseudo", "acgkd")].values == (0.6, 0.7) and rows[("pseudo", "randg")].values == (0.5,)


def test_markdown_table_has_methods_as_rows_and_datasets_as_columns_and_no_row_dropped():
    cells = [CellResult("MUTAG", "gfkd", 0, {"group/test/acc_ensemble": 0.5}),
             CellResult("PROTEINS", "gfkd", 0, {"group/test/acc_ensemble": 0.25, "teacher/test/acc": 1.0})]
    lines = markdown_table(aggregate(cells)).splitlines()
    assert lines[:2] == ["| method | MUTAG | PROTEINS |", "|---|---|---|"]
    assert "| teacher | — (no finished cell has it) | 100.00 ± 0.00 (1) |" in lines
    assert "| group ensemble (gfkd) | 50.00 ± 0.00 (1) | 25.00 ± 0.00 (1) |" in lines
    # protocol.md §6 and §8.7: a row that no cell has stays, "—" with the reason, in METHODS' order
    assert "| student, KD on real graphs | — (not in distill.baselines) | — (not in distill.baselines) |" in lines
    assert "| majority class | — (no finished cell has it) | — (no finished cell has it) |" == lines[2]
    assert len(lines) == 2 + len(METHODS)  # one generator: every method once
    two = markdown_table(aggregate(cells), ["gfkd", "randg"]).splitlines()  # the grid's generators, run or not
    assert "| data-free student (randg) | — (no finished cell) | — (no finished cell) |" in two
    assert len(two) == 2 + len(METHODS) + sum(m.per_generator for m in METHODS)
    assert table_metrics(aggregate(cells))["benchmark/PROTEINS/group_ensemble-gfkd/test/acc_mean"] == 0.25
    assert markdown_table([]) == "(no finished cell yet)\n"
    # an entry one dataset lacks gives its reason; a dataset whose cells all failed keeps its column
    three = markdown_table(aggregate(cells), ["gfkd"], ["MUTAG", "PROTEINS", "NCI1"]).splitlines()
    assert three[0] == "| method | MUTAG | PROTEINS | NCI1 |"
    assert "| teacher | — (no finished cell has it) | 100.00 ± 0.00 (1) | — (no finished cell) |" in three
    # a generator none of whose cells finished on a dataset: that is the reason, not the row's own
    mixed = [CellResult("MUTAG", "acgkd", 0, {"distill/test/acc": 0.7}),
             CellResult("PROTEINS", "acgkd", 0, {"distill/test/acc": 0.6, "distill/test/acc_val_selected": 0.6}),
             CellResult("PROTEINS", "gfkd", 0, {"distill/test/acc": 0.5, "distill/test/acc_val_selected": 0.5})]
    lines = markdown_table(aggregate(mixed), ["acgkd", "gfkd"]).splitlines()
    assert "| data-free student (gfkd) | — (no finished cell) | 50.00 ± 0.00 (1) |" in lines
    assert ("| data-free student, val-selected (uses real validation labels) (acgkd) | — (no validation split "
            "(protocol.val=false)) | 60.00 ± 0.00 (1) |") in lines


def test_the_std_within_a_split_is_beside_the_spread_over_splits():
    """protocol.md §3: the cell is the mean ± std over folds with the mean within-fold std (student seeds) beside it."""
    cells = [CellResult("MUTAG", "acgkd", 0, {"evaluate/test/acc_pseudo": 0.6, "evaluate/test/acc_pseudo_std": 0.02,
                                              "distill/test/acc_std": 0.5}),
             CellResult("MUTAG", "acgkd", 1, {"distill/test/acc": 0.8, "distill/test/acc_std": 0.04,
                                              "evaluate/test/acc_teacher": 0.9})]
    rows = {r.method: r for r in aggregate(cells)}
    assert rows["pseudo"].within == pytest.approx(0.03)  # the evaluate stage's std first, as for the value
    assert rows["teacher"].within is None
    assert "| data-free student (acgkd) | 70.00 ± 10.00 (2; within 3.00) |" in markdown_table(list(rows.values()))
    assert table_metrics(list(rows.values()))["benchmark/MUTAG/pseudo-acgkd/test/acc_within_std"] == pytest.approx(0.03)


def test_data_free_rows_give_their_collapsed_models_and_val_selected_rows_beside_them():
    """protocol.md §4: beside every data-free number the collapsed flag, and the val-selected number labelled so."""
    cells = [CellResult("MUTAG", "acgkd", s, {"distill/test/acc": 0.7, "distill/test/collapsed": c,
                                              "distill/test/acc_val_selected": v, "group/test/acc_ensemble": 0.6,
                                              "group/test/collapsed_ensemble": 0.0})
             for s, c, v in ((0, 1.0, 0.8), (1, 2.0, 0.6))]
    rows = {r.method: r for r in aggregate(cells)}
    assert rows["pseudo"].collapsed == 3 and rows["group_ensemble"].collapsed == 0 and rows["pseudo_val"].collapsed is None
    lines = markdown_table(list(rows.values())).splitlines()
    assert "| data-free student (acgkd) | 70.00 ± 0.00 (2; 3 collapsed) |" in lines
    assert "| data-free student, val-selected (uses real validation labels) (acgkd) | 70.00 ± 10.00 (2) |" in lines
    assert "| group ensemble (acgkd) | 60.00 ± 0.00 (2; 0 collapsed) |" in lines
    order = [m.key for m in METHODS]
    assert order.index("pseudo_val") == order.index("pseudo") + 1  # each beside its last-epoch row


def test_cells_of_one_split_with_other_fold_hashes_are_named():
    """protocol.md §8.1: the fold hash is the same for every method of a table."""
    same = [CellResult("MUTAG", g, 0, {}, "a" * 64) for g in ("acgkd", "randg")]
    assert fold_hash_mismatches(same + [CellResult("MUTAG", "acgkd", 1, {}, "b" * 64)]) == []
    other = [*same, CellResult("MUTAG", "gfkd", 0, {}, "c" * 64)]
    assert fold_hash_mismatches(other) == [f"MUTAG split 0: {'a' * 12} (acgkd, randg); {'c' * 12} (gfkd)"]
    from gfkd.benchmark import report_markdown

    rows = aggregate([CellResult("MUTAG", "acgkd", 0, {"teacher/test/acc": 0.9})])
    assert "**The fold hashes differ**" in report_markdown("b", None, "folds", 3, 3, [], "/r", False, rows,
                                                            mismatches=fold_hash_mismatches(other))
    assert "logged the same fold hash" in report_markdown("b", None, "folds", 3, 3, [], "/r", False, rows, mismatches=[])
    assert "fold hash" not in report_markdown("b", None, "folds", 3, 3, [], "/r", False, rows)  # none logged: no claim


def test_report_names_the_failed_cells_and_marks_real_data_group_rows():
    from gfkd.benchmark import report_markdown

    rows = aggregate([CellResult("MUTAG", "acgkd", 0, {"teacher/test/acc": 0.9})])
    text = report_markdown("b", "gfkd benchmark --name b", "folds", 1, 2, ["mutag-acgkd-fold1"], "/runs", True, rows)
    assert text.startswith("# Benchmark `b`: test accuracy (%)\n\nCommand: `gfkd benchmark --name b`\n\n")
    assert "1 of 2 cells finished; failed: mutag-acgkd-fold1 (rerun the same command" in text
    assert "`/runs/<cell>`" in text and "with-data reference rows" in text and text.endswith(markdown_table(rows))
    plain = report_markdown("b", None, "split seeds", 1, 1, [], "/runs", False, rows)
    assert "Command:" not in plain and "failed" not in plain and "with-data" not in plain
    assert "over split seeds (n per entry; within: the mean over split seeds of the std over student seeds or group " \
           "students; collapsed: models that put ≥ 95 % of the test graphs in one class, over the split seeds); 1 of 1 " \
           "cells finished. Each cell" in plain
    facts = report_markdown("b", "gfkd benchmark", "folds", 1, 1, [], "/r", False, rows, {"device": "cpu (x86_64)"},
                            recipe="acgkd")
    assert "Command: `gfkd benchmark`\n\n- device: cpu (x86_64)\n\nMean" in facts
    assert "`distill.recipe=acgkd`; protocol.md §6 defines the RandG, DeepInvG and GFKD rows with the plain" in facts
    assert "protocol.md §6 defines" not in report_markdown("b", None, "folds", 1, 1, [], "/r", False, rows,
                                                           recipe="plain")
