"""RandG: random graphs, no optimisation (gfkd.md §9).

Symmetric Erdős–Rényi G(n_g, p) with p = the teacher metadata's edge density (`auto`) or a fixed value (with
`generate.randg.directed`, every ordered pair an independent edge, as GFKD's directed layout); node types
i.i.d. uniform one-hot (featureful sets) or the degree one-hot of the sample (featureless sets). The label column is
the teacher's argmax: nothing was optimised toward a target. Parameter count 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gfkd.generators.base import (FinalGraphs, GenContext, StepLog, degree_features, dense_logits, edge_mask,
                                  node_mask)
from gfkd.generators.concrete import pairs_to_adjacency, real_pairs


def edge_prob(ctx: GenContext) -> float:
    p = ctx.cfg.randg.edge_prob
    return float(ctx.meta["edge_density_mean"]) if p == "auto" else float(p)


def random_graphs(ctx: GenContext, num_nodes: Tensor, gen: torch.Generator, p: float) -> tuple[Tensor, Tensor, Tensor]:
    """G(n, p) adjacencies [B, N, N] (symmetric, or directed under `randg.directed`), uniform one-hot (or degree)
    features [B, N, F], mask [B, N]."""
    mask = node_mask(num_nodes)
    B, N = mask.shape
    if ctx.cfg.randg.directed:
        real = edge_mask(num_nodes, N, directed=True)
        adj = (torch.rand(real.shape, generator=gen, device=ctx.device) < p).float() * real
    else:
        pm = real_pairs(num_nodes, N)
        pairs = (torch.rand(pm.shape, generator=gen, device=ctx.device) < p).float() * pm
        adj = pairs_to_adjacency(pairs, N)
    if ctx.featureless:
        x = degree_features(adj, mask, ctx.max_degree)
    else:
        types = torch.randint(0, ctx.num_features, (B, N), generator=gen, device=ctx.device)
        x = F.one_hot(types, ctx.num_features).float() * mask.unsqueeze(-1)
    return adj, x, mask


@torch.no_grad()
def generate(ctx: GenContext, num_nodes: Tensor, targets: Tensor, gen: torch.Generator, log: StepLog | None = None,
             step_offset: int = 0) -> FinalGraphs:
    """One chunk of random graphs (num_nodes: [B]) → FinalGraphs with adj: [B, N, N] (symmetric unless
    `randg.directed`), x: [B, N, F]; `targets` is ignored (labels are the teacher's argmax)."""
    num_nodes = num_nodes.to(ctx.device)
    p = edge_prob(ctx)
    adj, x, mask = random_graphs(ctx, num_nodes, gen, p)
    labels = dense_logits(ctx, x, adj, mask, bucketed=True).argmax(-1)
    return FinalGraphs(num_nodes=num_nodes, adj=adj, edge_prob=adj * 0 + p, x=x, targets=labels, gen_step=0,
                       num_params=0, info={"edge_prob": p, "directed": float(ctx.cfg.randg.directed)})
