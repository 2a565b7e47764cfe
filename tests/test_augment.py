"""Online pseudo-graph perturbation of the distill loop (gfkd/augment.py)."""

import torch

from gfkd.augment import perturb

# Two graphs: a 4-cycle (nodes 0..3) and a triangle (nodes 4..6); 3 node types.
X = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 1, 2])]
UND = torch.tensor([[0, 1, 2, 0, 4, 4, 5], [1, 2, 3, 3, 5, 6, 6]])
EI = torch.cat([UND, UND.flip(0)], 1)
BATCH = torch.tensor([0, 0, 0, 0, 1, 1, 1])


def _run(seed=0, **kw):
    args = {"edge_flip": 0.0, "node_noise": 0.0, "degree_features": False} | kw
    return perturb(X, EI, BATCH, 2, generator=torch.Generator().manual_seed(seed), **args)


def test_zero_rates_leave_the_graph_unchanged():
    x, ei = _run()
    assert torch.equal(x, X) and ei.size(1) == EI.size(1)
    assert {tuple(e) for e in ei.t().tolist()} == {tuple(e) for e in EI.t().tolist()}


def test_edge_flips_stay_undirected_inside_their_graph_without_self_loops():
    changed = False
    for seed in range(20):
        _, ei = _run(seed, edge_flip=0.5)
        pairs = {tuple(e) for e in ei.t().tolist()}
        assert all((j, i) in pairs for i, j in pairs)  # symmetric
        assert all(i != j for i, j in pairs)
        assert all(BATCH[i] == BATCH[j] for i, j in pairs)  # no cross-graph pair
        assert ei.size(1) <= EI.size(1)  # as many adds as drops, minus collisions
        changed |= pairs != {tuple(e) for e in EI.t().tolist()}
    assert changed


def test_node_noise_keeps_one_hot_rows_and_is_seeded():
    x, _ = _run(3, node_noise=0.9)
    assert torch.equal(x.sum(1), torch.ones(7)) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x, _run(3, node_noise=0.9)[0])
    assert any(not torch.equal(_run(s, node_noise=0.9)[0], X) for s in range(5))


def test_degree_features_follow_the_perturbed_structure():
    x0 = torch.nn.functional.one_hot(torch.tensor([2, 2, 2, 2, 2, 2, 2]), 4).float()
    for seed in range(5):
        x, ei = perturb(x0, EI, BATCH, 2, edge_flip=0.5, node_noise=0.5, generator=torch.Generator().manual_seed(seed),
                        degree_features=True)
        deg = torch.bincount(ei[0], minlength=7).clamp(max=3)
        assert torch.equal(x.argmax(1), deg)


def test_edge_add_keeps_every_edge_and_adds_pairs_inside_their_graph():
    grew = False
    for seed in range(20):
        _, ei = _run(seed, edge_add=1.0)
        pairs = {tuple(e) for e in ei.t().tolist()}
        assert {tuple(e) for e in EI.t().tolist()} <= pairs  # nothing dropped
        assert all((j, i) in pairs for i, j in pairs) and all(i != j for i, j in pairs)
        assert all(BATCH[i] == BATCH[j] for i, j in pairs)
        grew |= len(pairs) > EI.size(1)
    assert grew  # (the triangle is complete: only the 4-cycle can gain its two diagonals)


def test_edge_add_densifies_by_a_on_average_despite_pairs_that_were_edges():
    """200 graphs of 20 nodes at density 0.3: a = 0.3 adds 30 % more edges on average, not 0.3 · (1 − 0.3)."""
    gen = torch.Generator().manual_seed(0)
    n, graphs = 20, 200
    iu = torch.triu_indices(n, n, 1)
    und = torch.cat([iu[:, torch.rand(iu.size(1), generator=gen) < 0.3] + g * n for g in range(graphs)], 1)
    ei = torch.cat([und, und.flip(0)], 1)
    batch = torch.arange(graphs).repeat_interleave(n)
    x = torch.ones(n * graphs, 1)
    _, out = perturb(x, ei, batch, graphs, edge_flip=0.0, node_noise=0.0, edge_add=0.3, degree_features=False,
                     generator=torch.Generator().manual_seed(1))
    growth = out.size(1) / ei.size(1) - 1
    assert 0.26 < growth < 0.34, growth
    per_graph = torch.bincount(batch[out[0]], minlength=graphs) / torch.bincount(batch[ei[0]], minlength=graphs) - 1
    assert per_graph.min() < 0.1 and per_graph.max() > 0.45  # f ~ U(0, 2a): some graphs barely change, some gain 2a


def test_edge_add_recomputes_degree_features():
    x0 = torch.nn.functional.one_hot(torch.tensor([2, 2, 2, 2, 2, 2, 2]), 4).float()
    for seed in range(5):
        x, ei = perturb(x0, EI, BATCH, 2, edge_flip=0.0, node_noise=0.0, edge_add=1.0, degree_features=True,
                        generator=torch.Generator().manual_seed(seed))
        assert torch.equal(x.argmax(1), torch.bincount(ei[0], minlength=7).clamp(max=3))


def test_hub_joins_each_graphs_highest_degree_node_to_all_others():
    # the path 0-1-2-3 (nodes 1 and 2 have degree 2: the lowest index, 1, is the centre and gains the pair 1-3) and
    # the triangle 4-5-6 (complete already: its centre, node 4, gains nothing)
    und = torch.tensor([[0, 1, 2, 4, 4, 5], [1, 2, 3, 5, 6, 6]])
    ei = torch.cat([und, und.flip(0)], 1)
    x, out = perturb(X, ei, BATCH, 2, edge_flip=0.0, node_noise=0.0, degree_features=False,
                     generator=torch.Generator().manual_seed(0), hub=1.0)
    assert {tuple(e) for e in out.t().tolist()} == {tuple(e) for e in ei.t().tolist()} | {(1, 3), (3, 1)}
    assert torch.equal(x, X)


def test_hub_gives_a_graph_without_one_a_centre_and_recomputes_degrees():
    # the 4-cycle alone: every degree is 2, node 0 is joined to node 2 (its only non-neighbour)
    x, out = perturb(torch.eye(6)[[2, 2, 2, 2]], torch.cat([UND[:, :4], UND[:, :4].flip(0)], 1),
                     torch.zeros(4, dtype=torch.long), 1, edge_flip=0.0, node_noise=0.0, degree_features=True,
                     generator=torch.Generator().manual_seed(0), hub=1.0)
    assert (0, 2) in {tuple(e) for e in out.t().tolist()} and out.size(1) == 10
    assert x.argmax(1).tolist() == [3, 2, 3, 2]


def test_hub_zero_leaves_the_graph_and_the_generator_state_alone():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    _, a = perturb(X, EI, BATCH, 2, edge_flip=0.0, node_noise=0.0, degree_features=False, generator=g1, hub=0.0)
    assert a.size(1) == EI.size(1) and torch.equal(g1.get_state(), g2.get_state())


def test_the_config_says_which_knobs_edit_edges_and_whether_any_is_on():
    """distill's directed-bank refusal reads `edits_edges`, the loop's relabelling `on`: every knob counts."""
    from gfkd.config import AugmentConfig

    assert not AugmentConfig().on and not AugmentConfig().edits_edges
    for knob in ("edge_flip", "edge_add", "hub"):
        ac = AugmentConfig(**{knob: 0.1})
        assert ac.edits_edges and ac.on, knob
    ac = AugmentConfig(node_noise=0.1)
    assert ac.on and not ac.edits_edges
    assert set(AugmentConfig.model_fields) == {"edge_flip", "node_noise", "edge_add", "hub"}  # a new knob: decide
