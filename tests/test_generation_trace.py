"""benchmarks/generation_trace.py: one chunk's loss terms and structure, per override set, from a teacher alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("generation_trace", REPO / "benchmarks" / "generation_trace.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_trace_reports_terms_and_structure_of_a_featureless_chunk(tiny_deg_teacher_dir):
    r = bench.trace(tiny_deg_teacher_dir / "teacher.pt", ["generate.iterations=3"], graphs=4)
    assert r["graphs"] == 4 and r["first"]["deg"] >= 0 and r["last"]["bn"] > 0  # featureless: the degree prior is on
    assert 0 <= r["density"] <= 1 and 0 <= r["isolated"] <= 1 and 0 <= r["agreement"] <= 1
    off = bench.trace(tiny_deg_teacher_dir / "teacher.pt", ["generate.iterations=3",
                                                            "generate.acgkd.beta_deg=0"], graphs=4)
    assert off["last"]["deg"] != off["last"]["deg"]  # β_deg = 0: the term is not logged (NaN)
