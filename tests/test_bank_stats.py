"""benchmarks/bank_stats.py: which runs folder, label and cell a --runs entry names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bank_stats", REPO / "benchmarks" / "bank_stats.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_a_runs_entry_names_its_folder_label_and_cell():
    assert bench.parse_runs_spec("/tmp/r") == (Path("/tmp/r"), "/tmp/r", "acgkd")
    assert bench.parse_runs_spec("/tmp/r:hard targets (default)") == (Path("/tmp/r"), "hard targets (default)", "acgkd")
    assert bench.parse_runs_spec("/tmp/r:soft (lo = 0.5):acgkd-soft-targets") == (
        Path("/tmp/r"), "soft (lo = 0.5)", "acgkd-soft-targets")
