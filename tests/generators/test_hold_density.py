"""generate.acgkd.hold_density: each pseudo-graph's expected edge count held at its start's by a per-graph logit
shift (gfkd/generators/acgkd.py `edge_shift`, `_Structure.hold_edges`)."""

import warnings

import pytest
import torch

from gfkd.config import resolve_config
from gfkd.generators import acgkd
from gfkd.generators.bank import make_generator
from gfkd.generators.base import GenContext
from gfkd.models import build_classifier

from .conftest import make_ctx

N = torch.tensor([5, 7, 6, 4])
Y = torch.tensor([0, 1, 0, 1])


def _sums(values, group, shift):
    return torch.zeros(len(shift), dtype=values.dtype).index_add_(0, group, torch.sigmoid(values + shift[group]))


def test_edge_shift_on_a_literal_graph_pair():
    # graph 0: logits 0, 0 (expected 1 edge) asked for 1: no shift; graph 1: logits 0, 0, 0 asked for 2.25
    values = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    group = torch.tensor([0, 0, 1, 1, 1])
    shift = acgkd.edge_shift(values, group, torch.tensor([1.0, 2.25], dtype=torch.float64))
    assert shift[0].abs() < 1e-6
    assert shift[1] == pytest.approx(torch.logit(torch.tensor(0.75, dtype=torch.float64)).item(), abs=1e-5)


def test_edge_shift_reaches_every_target_from_far_away():
    gen = torch.Generator().manual_seed(0)
    B, P = 6, 40
    values = torch.randn(B * P, generator=gen, dtype=torch.float64) * 3 + torch.tensor([-9.0, 9.0]).repeat(B * P // 2)
    group = torch.arange(B).repeat_interleave(P)
    target = torch.tensor([0.5, 3.0, 12.0, 20.0, 31.0, 39.5], dtype=torch.float64)
    shift = acgkd.edge_shift(values, group, target)
    assert torch.allclose(_sums(values, group, shift), target, rtol=1e-4)


def test_edge_shift_warns_when_its_steps_run_out_and_not_when_it_converges():
    values = torch.tensor([-9.0, -9.0, 9.0, 9.0], dtype=torch.float64)  # two graphs far from their targets
    group = torch.tensor([0, 0, 1, 1])
    target = torch.tensor([1.5, 0.5], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="still off their start's expected edge count after 2 Newton steps"):
        acgkd.edge_shift(values, group, target, iterations=2)  # steps clipped to ±2: 2 steps cannot cover 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shift = acgkd.edge_shift(values, group, target)
    assert torch.allclose(_sums(values, group, shift), target, rtol=1e-4)


def _ctx(*overrides):
    meta = {"num_features": 3, "num_classes": 2, "feature_kind": "label", "max_degree": 5, "degree_mean": 2.0,
            "edge_density_mean": 0.3}
    return GenContext(build_classifier("gin", 3, 2, layers=2, hidden=4), meta, {},
                      resolve_config(None, list(overrides)).generate, torch.device("cpu"))


@pytest.mark.parametrize("mode", ["none", "lowrank", "budget"])
def test_hold_edges_restores_the_start_and_keeps_the_logit_order(mode):
    st = acgkd._Structure(_ctx(), N, mode, 0.5, make_generator(1))
    start = st.expected_edges()
    with torch.no_grad():  # a step that rewires every graph, thins graphs 0 and 3 and thickens graphs 1 and 2
        gen = make_generator(2)
        for p in st.params:
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
        offset = torch.tensor([-2.0, 1.5, 0.3, -0.7])
        if mode == "lowrank":
            st.b.add_(offset)
        else:
            st.alpha.add_(offset.unsqueeze(1))
    before = st.logits().detach().clone()
    assert not torch.allclose(st.expected_edges(), start, rtol=0.05)
    if mode == "budget":
        st.refresh()
        picked = st.flat.clone()
    st.hold_edges(start)
    assert torch.allclose(st.expected_edges(), start, rtol=1e-3)
    after = st.logits().detach()
    shift = (after - before)[:, :1]
    assert torch.allclose(after - before, shift.expand_as(after), atol=1e-5)  # one scalar per graph: order kept
    if mode == "budget":  # the shift moves candidates and the rest alike: a refresh picks the same pairs
        st.refresh()
        assert torch.equal(st.flat, picked)


@pytest.mark.parametrize("mode", ["none", "lowrank", "budget"])
def test_generation_with_hold_density_ends_at_its_start_edges(tiny_teacher_dir, mode):
    """The whole loop, budget candidates refreshed every 10 steps: with CE alone pulling the structure, held graphs
    end where they started, unheld ones move."""
    ends = {}
    for hold in (False, True):
        ctx = make_ctx(tiny_teacher_dir, "generate.iterations=40", "generate.beta_bn=0",
                       f"generate.acgkd.xi_mode={mode}", "generate.acgkd.xi=0.5", "generate.acgkd.xi_refresh=10",
                       f"generate.acgkd.hold_density={str(hold).lower()}")
        start = acgkd._Structure(ctx, N, mode, 0.5, make_generator(0, 0, 0)).expected_edges()  # generate's first draws
        g = acgkd.generate(ctx, N, Y, make_generator(0, 0, 0))
        st = acgkd._Structure(ctx, N, mode, 0.5, make_generator(9))  # a structure to load the final parameters into
        with torch.no_grad():
            for name in ("alpha", "z", "w", "b"):
                if name in g.state:
                    getattr(st, name).copy_(g.state[name])
        if mode == "budget":
            st._set_candidates(g.state["candidates"].view(-1).nonzero().squeeze(1))
        ends[hold] = st.expected_edges()
    assert torch.allclose(ends[True], start, rtol=1e-3), (ends[True], start)
    assert (ends[False] - start).abs().max() > 0.05 * start.max(), (ends[False], start)


def test_hold_density_is_in_the_generate_key():
    default = resolve_config(None).stage_config("generate")
    held = resolve_config(None, ["generate.acgkd.hold_density=true"]).stage_config("generate")
    assert default["generate"]["acgkd"]["hold_density"] is False and held["generate"]["acgkd"]["hold_density"] is True
