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


def test_spread_pick_spans_the_chunk_sizes_and_first_takes_the_smallest(tiny_deg_teacher_dir):
    kw = dict(overrides=["generate.iterations=2", "generate.nodes=uniform"], graphs=3)
    first = bench.trace(tiny_deg_teacher_dir / "teacher.pt", pick="first", **kw)
    spread = bench.trace(tiny_deg_teacher_dir / "teacher.pt", pick="spread", **kw)
    assert len(first["graph_nodes"]) == len(spread["graph_nodes"]) == 3
    assert first["graph_nodes"] == sorted(first["graph_nodes"])
    assert max(spread["graph_nodes"]) > max(first["graph_nodes"])  # the chunk's largest graph is picked


def test_density_by_size_buckets_each_graph_once():
    cells = bench.density_by_size([10, 14, 15, 40, 50], [0.5, 0.3, 0.2, 0.1, 0.05], [15, 25, 40])
    assert [c for _, c in cells] == [2, 1, 0, 2] and abs(cells[0][0] - 0.4) < 1e-9 and abs(cells[3][0] - 0.075) < 1e-9
    assert cells[2][0] != cells[2][0]  # an empty bucket is NaN
    assert bench.bucket_names([15, 25, 40]) == ["n < 15", "15 ≤ n < 25", "25 ≤ n < 40", "n ≥ 40"]


def test_a_target_class_with_no_graph_in_the_chunk_prints_a_dash_not_nan():
    r = {"class_graphs": [3, 0], "class_density": [0.25, float("nan")], "class_agreement": [2 / 3, float("nan")]}
    assert bench.class_cells(r) == "0.250 / 0.667 | —"
