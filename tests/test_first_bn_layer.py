"""benchmarks/first_bn_layer.py: R_BN split per layer along a chunk, and on real graphs rebuilt in known ways."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch_geometric.utils import degree

import gfkd.generators.bn_stats as bn_stats
from gfkd.models.bn_stats import bn_layers
from gfkd.stages.teacher import load_teacher

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("first_bn_layer", REPO / "benchmarks" / "first_bn_layer.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_split_terms_add_up_to_the_relative_term():
    g = torch.Generator().manual_seed(0)
    mu_hat, mu = torch.randn(5, generator=g), torch.randn(5, generator=g)
    var_hat, var = torch.rand(5, generator=g) + 0.1, torch.rand(5, generator=g) + 0.1
    mean_part, var_part, log_ratio = bench.split_terms(mu_hat, var_hat, mu, var, 1e-5)
    assert abs(mean_part + var_part - float(bn_stats.relative_term(mu_hat, var_hat, mu, var, 1e-5))) < 1e-6
    assert abs(log_ratio - float(torch.log((var_hat + 1e-5) / (var + 1e-5)).mean())) < 1e-6
    assert bench.split_terms(mu, var / 4, mu, var, 0.0)[2] < 0  # a quarter of the variance: negative log ratio


def test_along_chunk_records_every_layer_each_step_and_restores_the_loss(tiny_deg_teacher_dir):
    teacher, _, _ = load_teacher(tiny_deg_teacher_dir / "teacher.pt")
    layers = len(bn_layers(teacher))
    orig = bn_stats.relative_term
    r, steps = bench.along_chunk(tiny_deg_teacher_dir / "teacher.pt", "generate.iterations=3", 4, layers)
    assert bn_stats.relative_term is orig  # the tap is removed
    assert sorted(steps) == [0, 2] and all(len(t) == layers for t in steps.values())
    assert r["graphs"] == 4 and all(v >= 0 for t in steps[0] for v in t[:2])


def test_real_graphs_score_zero_and_swaps_keep_degrees(tiny_deg_teacher_dir, tiny_root, tmp_path):
    teacher, meta, bn_eval = load_teacher(tiny_deg_teacher_dir / "teacher.pt")
    train, max_degree = bench.training_graphs(meta, tiny_root, tmp_path)
    built = bench.variants(train, max_degree, np.random.default_rng(0), couplings=(0.9,))
    assert "Chung-Lu, pooled histogram, size-coupled ρ = 0.9" in built
    real = bench.score(teacher, bn_eval, built["real graphs"])
    assert all(abs(v) < 1e-4 for t in real for v in t)  # the stored eval statistics are the training split's
    for name, gs in built.items():
        assert [g.num_nodes for g in gs] == [g.num_nodes for g in train], name
    deg = lambda g: sorted(degree(g.edge_index[0], g.num_nodes).tolist())  # noqa: E731
    assert all(deg(a) == deg(b) for a, b in zip(built["degree-preserving swaps"], train))
    assert any(deg(a) != deg(b) for a, b in zip(built["Chung-Lu, pooled histogram"], train))
