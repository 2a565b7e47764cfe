"""benchmarks/determinism.py: every probe runs on a tiny graph on the CPU and repeats there; the report marks a probe
that differs and names the runs it was written from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from gfkd.models.node_students import NodeGraph

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("determinism_benchmark", REPO / "benchmarks" / "determinism.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _tiny() -> NodeGraph:
    x = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 0, 1]])
    ei = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4], [1, 0, 2, 1, 3, 2, 4, 3]])
    return NodeGraph.build(x, ei, torch.tensor([0, 1, 0, 1, 0]))


def test_every_probe_runs_and_repeats_on_the_cpu():
    g = _tiny()
    found = bench.probes(g, torch.device("cpu"))
    assert any("GAT" in n for n in found) and any("torch.sparse.mm" in n for n in found)
    for name, fn in found.items():
        first, again = fn(), fn()
        assert first and len(first) == len(again), name
        assert all(torch.equal(a, b) for a, b in zip(first, again)), name
    assert bench.strict_check(g, torch.device("cpu")) == "no error"


def test_the_report_marks_a_probe_that_differs():
    run = {"device": "cuda", "command": "python benchmarks/determinism.py --device cuda", "commit": "abc", "repeats": 4,
           "dataset": "Cora", "machine": "m", "strict": "no error", "_path": "a.json",
           "probes": [{"probe": "p1", "repeats": True, "max_abs_diff": 0.0, "warnings": []},
                      {"probe": "p2", "repeats": False, "max_abs_diff": 1.4e-6, "warnings": ["w"]}]}
    text = bench.report([run, dict(run, device="cpu", probes=run["probes"][:1], _path="b.json")])
    assert "--report a.json b.json" in text
    assert "| p1 | repeats | repeats |" in text and "| p2 | **differs** (max \\|diff\\| 1.4e-06) | — |" in text
    assert "- [1]: `w`" in text and "- [2]: none" in text
