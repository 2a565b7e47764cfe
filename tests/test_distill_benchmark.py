"""benchmarks/distill.py's store: a new run adds or replaces rows of docs/results.json and keeps the rest."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("distill_benchmark", REPO / "benchmarks" / "distill.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _row(folds: dict[int, float]) -> dict:
    n = len(folds)
    return {"folds": folds, "within_std": [0.01] * n, "val_sel": [0.5] * n, "collapsed": 0, "students": 3 * n,
            "gen": []}


def _roundtrip(section: dict) -> dict:
    """As stored: JSON (fold keys become strings)."""
    return json.loads(json.dumps(section))


def test_a_run_on_all_folds_replaces_a_row_and_a_partial_rerun_is_a_note():
    first = bench.add_run(None, {"ACGKD": _row({0: 0.8, 1: 0.7}), "RandG": _row({0: 0.4, 1: 0.3})}, "`run a`")
    second = bench.add_run(_roundtrip(first), {"ACGKD": _row({0: 0.8}), "ACGKD, no curriculum": _row({0: 0.6})},
                           "`run b`")
    rows = second["rows"]
    assert second["commands"] == ["`run a`", "`run b`"]
    assert rows["ACGKD"]["folds"] == {0: 0.8, 1: 0.7} and rows["ACGKD"]["source"] == 0  # stored row kept
    assert rows["ACGKD, no curriculum"]["source"] == 1 and rows["RandG"]["source"] == 0
    (note,) = second["reruns"]
    assert note["row"] == "ACGKD" and "identical" in note["text"] and note["source"] == 1
    third = bench.add_run(_roundtrip(second), {"ACGKD": _row({0: 0.9, 1: 0.7}), "RandG": _row({0: 0.1, 1: 0.2}),
                                               "ACGKD, no curriculum": _row({0: 0.5, 1: 0.5})}, "`run c`")
    # every row of runs a and b replaced: only run c is left, and the note about ACGKD went with its row
    assert third["commands"] == ["`run c`"] and not third["reruns"]
    assert {r["source"] for r in third["rows"].values()} == {0} and third["rows"]["ACGKD"]["folds"][0] == 0.9


def test_a_changed_rerun_says_how_far_it_moved_and_the_report_names_each_rows_run():
    first = bench.add_run(None, {"ACGKD": _row({0: 0.8, 1: 0.7})}, "`run a`")
    second = bench.add_run(_roundtrip(first), {"ACGKD": _row({1: 0.65})}, "`run b`")
    assert "largest per-fold change 0.050" in second["reruns"][0]["text"]
    text = bench.render({"MUTAG": second})
    assert "1. `run a`" in text and "2. `run b`" in text and "| ACGKD | 0.750 ± 0.050 | 2 |" in text
    assert "(run [2])" in text
