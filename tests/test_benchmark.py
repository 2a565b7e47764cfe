"""The benchmark table: which metric each method reads, how splits and generators are counted."""

from __future__ import annotations

import pytest

from gfkd.benchmark import CellResult, aggregate, markdown_table, table_metrics


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


def test_markdown_table_has_methods_as_rows_and_datasets_as_columns():
    cells = [CellResult("MUTAG", "gfkd", 0, {"group/test/acc_ensemble": 0.5}),
             CellResult("PROTEINS", "gfkd", 0, {"group/test/acc_ensemble": 0.25, "teacher/test/acc": 1.0})]
    text = markdown_table(aggregate(cells))
    assert text.splitlines() == ["| method | MUTAG | PROTEINS |", "|---|---|---|",
                                 "| teacher | — | 100.00 ± 0.00 (1) |",
                                 "| group ensemble (gfkd) | 50.00 ± 0.00 (1) | 25.00 ± 0.00 (1) |"]
    assert table_metrics(aggregate(cells))["benchmark/PROTEINS/group_ensemble-gfkd/test/acc_mean"] == 0.25
    assert markdown_table([]) == "(no finished cell yet)\n"


def test_report_names_the_failed_cells_and_marks_real_data_group_rows():
    from gfkd.benchmark import report_markdown

    rows = aggregate([CellResult("MUTAG", "acgkd", 0, {"teacher/test/acc": 0.9})])
    text = report_markdown("b", "gfkd benchmark --name b", "folds", 1, 2, ["mutag-acgkd-fold1"], "/runs", True, rows)
    assert text.startswith("# Benchmark `b`: test accuracy (%)\n\nCommand: `gfkd benchmark --name b`\n\n")
    assert "1 of 2 cells finished; failed: mutag-acgkd-fold1 (rerun the same command" in text
    assert "`/runs/<cell>`" in text and "with-data reference rows" in text and text.endswith(markdown_table(rows))
    plain = report_markdown("b", None, "split seeds", 1, 1, [], "/runs", False, rows)
    assert "Command:" not in plain and "failed" not in plain and "with-data" not in plain
    assert "over split seeds (n per entry); 1 of 1 cells finished. Each cell" in plain
