"""benchmarks/lean_diagnostics.py: structure by class, the BN-statistics swap and the oracle margin shift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch_geometric.data import Data

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lean_diagnostics", REPO / "benchmarks" / "lean_diagnostics.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _graph(n: int, und: list[tuple[int, int]]) -> Data:
    e = torch.tensor(und, dtype=torch.long).t()
    return Data(x=torch.ones(n, 1), edge_index=torch.cat([e, e.flip(0)], 1), num_nodes=n)


def test_structure_counts_density_degree_and_centres_per_class():
    star = _graph(4, [(0, 1), (0, 2), (0, 3)])  # density 0.5, mean degree 1.5, a centre
    path = _graph(4, [(0, 1), (1, 2), (2, 3)])  # the same density, no node of degree 3
    triangle = _graph(3, [(0, 1), (1, 2), (0, 2)])  # density 1, a centre
    out = bench.structure([star, path, triangle], np.array([0, 0, 1]))
    assert out[0] == (2, 4.0, 0.5, 1.5, 0.5)
    assert out[1] == (1, 3.0, 1.0, 2.0, 1.0)


def test_top_class_by_fold_gives_each_banks_largest_teacher_class_and_counts_the_folds_all_in_one():
    cells = [{"structure": {"real training graphs, by label": {0: (5, 0, 0, 0, 0), 1: (5, 0, 0, 0, 0)},
                            "GFKD bank, by the teacher": {1: (10, 0, 0, 0, 0)},
                            "ACGKD bank, by the teacher": {0: (3, 0, 0, 0, 0), 1: (1, 0, 0, 0, 0)}}},
             {"structure": {"GFKD bank, by the teacher": {0: (6, 0, 0, 0, 0), 1: (2, 0, 0, 0, 0)}}}]
    head, rule, gfkd, acgkd = bench.top_class_by_fold(cells, [3, 7])
    assert head == "| bank | fold 3 | fold 7 | folds all in one class |" and rule == "|---|---|---|---|"
    assert gfkd == "| GFKD bank | 1.000 (1) | 0.750 (0) | 1 |"
    assert acgkd == "| ACGKD bank | 0.750 (0) | — | 0 |"


def test_best_shift_moves_the_boundary_onto_the_teachers_and_prefers_no_shift():
    margin = torch.tensor([-2.0, -0.3, -0.2, 1.0])
    assert bench.best_shift(margin, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.35)  # the smallest s that makes −0.3 positive
    assert bench.best_shift(margin, torch.tensor([0, 0, 0, 1])) == 0.0


class _Pool(nn.Module):
    """A one-BN 'student' with the call signature of the project's models."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1)

    def forward(self, x, edge_index, batch, num_graphs):
        return self.bn(x)


def test_bn_statistics_are_recomputed_on_the_given_graphs_only_in_a_copy():
    model = _Pool().eval()
    graphs = [Data(x=torch.tensor([[v]]), edge_index=torch.zeros(2, 0, dtype=torch.long)) for v in (1.0, 3.0, 5.0, 9.0)]
    fresh = bench.with_bn_stats_of(model, graphs)
    assert torch.allclose(fresh.bn.running_mean, torch.tensor([4.5]))  # every graph's node once, not a momentum blend
    assert torch.allclose(fresh.bn.running_var, torch.tensor([[1.0, 3.0, 5.0, 9.0]]).var())  # unbiased, as BN keeps
    assert not fresh.training and torch.equal(model.bn.running_mean, torch.zeros(1))


def test_bank_rows_are_named_by_generator_or_ablation_folder():
    assert [bench.row_name(f) for f in ("acgkd", "gfkd", "randg")] == ["ACGKD", "GFKD", "RandG"]
    assert bench.row_name("deepinvg") == bench.row_name("deepinv") == "DeepInvG"  # as the evaluate report has it
    assert bench.row_name("acgkd-held-density") == "ACGKD, held density"
    assert bench.row_name("acgkd-size-coupled-degrees") == "ACGKD, size-coupled degrees"  # its hyphen kept
    assert bench.row_name("acgkd-ego-hub") == "ACGKD, ego hub" and bench.row_name("elsewhere") == "elsewhere"
