"""benchmarks/threads.py's table: each row against the mean of the same thread setting without other jobs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("threads_benchmark", REPO / "benchmarks" / "threads.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _row(jobs: int, threads: str, wall: float) -> dict:
    return {"competitors": jobs, "threads": threads, "torch_threads": int(threads), "wall_s": wall, "test_acc": 0.75}


def test_each_row_is_divided_by_its_own_settings_mean_alone():
    rows = [_row(0, "1", 6.0), _row(0, "2", 4.0), _row(0, "1", 8.0), _row(0, "2", 6.0),
            _row(1, "1", 7.0), _row(1, "2", 110.0)]
    table = bench.render(rows, "cmd", "machine")
    body = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[4] for line in body] == ["0.86", "0.80", "1.14", "1.20", "1.00", "22.00"]
    assert "Command: `cmd`" in table and "Machine: machine" in table
