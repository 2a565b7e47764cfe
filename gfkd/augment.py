"""Pseudo-graph perturbation for the distill loop: the teacher relabels each perturbed batch online, so the student
also sees graphs between the generator's (often over-confident) samples and the teacher's decision boundary.

    edge_flip p: in each graph, every undirected edge is dropped with probability p and as many random node pairs
                 of the same graph are added (the expected edge count is kept; collisions and self-pairs are
                 discarded, so it can fall slightly);
    edge_add a:  then each graph g gains about f_g·m_g new edges, m_g its edge count and f_g ~ U(0, 2a) drawn per
                 graph (a on average): random pairs of the same graph, drawn 1 / (1 − density_g) times as often so
                 that the pairs that were already edges are made up for (self-pairs and repeats are discarded, so
                 it can fall a little short); a densifies the bank on average, the spread keeps graphs near their
                 own density too;
    hub h:       then, with probability h per graph, its highest-degree node (the lowest index among ties) is joined
                 to every other node of the graph: the centre of an ego network (every IMDB-BINARY graph has one,
                 docs/distill.md);
    node_noise q: on one-hot node-label features, each node's type is redrawn uniformly with probability q.

Degree-feature sets (featureless datasets, x = one-hot(min(deg, D))) get their features recomputed from the perturbed
structure instead of node noise. Nothing here touches the stored teacher logits: the caller checks them on the
unperturbed batch and takes z_T from the teacher on the perturbed one.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import coalesce, degree, scatter


def _random_pairs(per_graph: Tensor, counts: Tensor, generator: torch.Generator) -> Tensor:
    """per_graph[g] uniform random node pairs (i < j) inside graph g of a batch whose graphs have counts: [G] nodes,
    self-pairs dropped: [2, P]."""
    dev = counts.device
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
    g = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), per_graph)
    u = (torch.rand(g.numel(), generator=generator).to(dev) * counts[g]).long()
    v = (torch.rand(g.numel(), generator=generator).to(dev) * counts[g]).long()
    pairs = torch.stack([ptr[g] + torch.minimum(u, v), ptr[g] + torch.maximum(u, v)])
    return pairs[:, pairs[0] != pairs[1]]


def perturb(x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int, *, edge_flip: float, node_noise: float,
            generator: torch.Generator, degree_features: bool, edge_add: float = 0.0,
            hub: float = 0.0) -> tuple[Tensor, Tensor]:
    """A perturbed copy of a batched graph. x: [N, F] one-hot, edge_index: [2, E] undirected (both directions),
    batch: [N]. Returns (x' [N, F], edge_index' [2, E'] undirected, coalesced, no self-loops, no cross-graph pairs)."""
    n = x.size(0)
    dev = x.device
    counts = degree(batch, num_graphs, dtype=torch.long)  # nodes per graph
    if edge_flip > 0:
        row, col = edge_index
        und = edge_index[:, row < col]
        keep = torch.rand(und.size(1), generator=generator).to(dev) >= edge_flip
        dropped = scatter((~keep).long(), batch[und[0]], dim=0, dim_size=num_graphs, reduce="sum")
        und = torch.cat([und[:, keep], _random_pairs(dropped, counts, generator)], 1)
        edge_index = coalesce(torch.cat([und, und.flip(0)], 1), num_nodes=n)
    if edge_add > 0:
        row, col = edge_index
        und = edge_index[:, row < col]
        m = scatter(torch.ones_like(und[0]), batch[und[0]], dim=0, dim_size=num_graphs, reduce="sum").double()
        density = m / (counts * (counts - 1) / 2).clamp(min=1)
        frac = torch.rand(num_graphs, generator=generator, dtype=torch.double).to(dev) * (2 * edge_add)
        draws = (frac * m / (1 - density).clamp(min=0.05)).round().long()
        und = torch.cat([und, _random_pairs(draws, counts, generator)], 1)
        edge_index = coalesce(torch.cat([und, und.flip(0)], 1), num_nodes=n)
    if hub > 0:
        picked = torch.rand(num_graphs, generator=generator).to(dev) < hub  # [G]
        deg = degree(edge_index[0], n, dtype=torch.long)
        idx = torch.arange(n, device=dev)
        key = deg * (n + 1) + (n - idx)  # largest degree first, then the lowest index
        centre = scatter(key, batch, dim=0, dim_size=num_graphs, reduce="max")  # [G]
        centre = (n - centre % (n + 1))[batch]  # back to the node index, per node: its graph's centre
        others = picked[batch] & (idx != centre)
        spokes = torch.stack([centre[others], idx[others]])
        edge_index = coalesce(torch.cat([edge_index, spokes, spokes.flip(0)], 1), num_nodes=n)
    if degree_features:
        width = x.size(1)
        deg = degree(edge_index[0], n, dtype=torch.long).clamp(max=width - 1)
        x = torch.nn.functional.one_hot(deg, width).to(x.dtype)
    elif node_noise > 0:
        redraw = torch.rand(n, generator=generator).to(dev) < node_noise
        if bool(redraw.any()):
            x = x.clone()
            types = torch.randint(x.size(1), (int(redraw.sum()),), generator=generator).to(dev)
            x[redraw] = torch.nn.functional.one_hot(types, x.size(1)).to(x.dtype)
    return x, edge_index
