"""The degree histogram a featureless GIN teacher was trained on, read back from its first layer, and a structure
start whose expected degrees follow it (`generate.acgkd.init_degrees=teacher`).

On degree one-hot input x_i = e_{min(deg_i, D)} the first GIN layer's BN sees W((1 + ε)·x_i + Σ_{j∈N(i)} x_j) + b.
Averaged over the training nodes, Σ_i Σ_{j∈N(i)} [deg_j = d] = d·n_d, so the BN layer's stored mean is

    μ = W m + b,   m_d = p_d·(1 + ε + d)          (W: [H, D + 1], p: the node degree histogram, d < D)

H = 128 equations in D + 1 unknowns (136 on IMDB-BINARY): non-negative least squares on the rows scaled by 1/σ, with
two more rows for Σ_d p_d = 1 and Σ_d d·p_d = d̄ (the metadata's mean degree), recovers p. Only the teacher's
parameters, its stored BN statistics and the metadata are read: nothing a data-free stage may not see.

The start: every node draws a target degree from p (restricted to 0 … n_g − 1), and the β-model logits
α_ij = a_i + a_j are fitted so that Σ_j σ(α_ij) equals the targets (the fixed point of Chatterjee, Diaconis and
Sly, arXiv 1005.4863), so hubs are there from the first step instead of a uniform density.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

from gfkd.models.bn_stats import bn_layers

CONSTRAINT_WEIGHT = 10.0  # scale of the Σp = 1 and mean-degree rows next to the 1/σ-scaled BN rows


def recover_histogram(weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor, degree_mean: float, eps: float = 0.0,
                      bn_eps: float = 1e-5, loops: str = "none") -> Tensor:
    """p: [D + 1] ≥ 0, Σ p = 1, from the first Linear (weight: [H, D + 1], bias: [H]) and its BN's target mean and
    variance ([H] each). The last bin D holds degrees ≥ D, counted with multiplier 1 + ε + D (exact below D).
    loops: the teacher's self-loop edges (gfkd.md §8), each counting its node once more: "none", "all", or
    "non_isolated" (none on degree-0 nodes, `selfloop_skip_isolated`)."""
    w, b = weight.detach().double().cpu().numpy(), bias.detach().double().cpu().numpy()
    mu, sd = mean.detach().double().cpu().numpy(), np.sqrt(var.detach().double().cpu().numpy() + bn_eps)
    d = np.arange(w.shape[1], dtype=np.float64)
    loop = {"none": 0.0 * d, "all": 1.0 + 0.0 * d, "non_isolated": (d > 0).astype(np.float64)}[loops]
    mult = 1.0 + eps + d + loop  # m_d = p_d·mult_d
    rows = np.vstack([w / sd[:, None], CONSTRAINT_WEIGHT / mult[None], CONSTRAINT_WEIGHT * (d / mult)[None] / degree_mean])
    rhs = np.concatenate([(mu - b) / sd, [CONSTRAINT_WEIGHT, CONSTRAINT_WEIGHT]])
    m, _ = nnls(rows, rhs, maxiter=50 * rows.shape[1])
    p = m / mult
    return torch.as_tensor(p / max(p.sum(), 1e-12), dtype=torch.float32)


def teacher_histogram(teacher: torch.nn.Module, targets: dict[str, tuple[Tensor, Tensor]], degree_mean: float) -> Tensor:
    """`recover_histogram` on a GIN teacher's first layer with the BN targets the generator matches.

    Raises:
        ValueError: the teacher is not a GIN with batch norm after its first Linear (GCN's normalised sum is not
            linear in the histogram).
    """
    conv = teacher.convs[0]
    first_bn = next(iter(bn_layers(teacher)), None)
    if getattr(teacher, "arch", None) != "gin" or first_bn is None or not first_bn.startswith("convs.0.mlp"):
        raise ValueError("init_degrees=teacher needs a GIN teacher with batch norm (generate.acgkd.init_degrees=uniform "
                         "for other teachers)")
    mean, var = targets[first_bn]
    lin = conv.mlp[0]
    loops = ("none" if not getattr(teacher, "loops_in_data", False) else
             "non_isolated" if teacher.skip_isolated else "all")
    return recover_histogram(lin.weight, lin.bias, mean, var, degree_mean, eps=float(conv.eps), loops=loops)


def sample_degrees(p: Tensor, num_nodes: Tensor, gen: torch.Generator, coupling: float = 0.0) -> Tensor:
    """Target degrees [B, N] (0 on padding) drawn per node from p restricted to 0 … n_g − 1 (num_nodes: [B]).

    coupling ρ in [0, 1): a Gaussian copula between a graph's size rank in the chunk and its nodes' degree
    quantiles. Node i of graph g takes the quantile u = Φ(ρ·z_g + √(1 − ρ²)·ε_i) of its graph's restricted p, with
    z_g = Φ⁻¹ of the graph's node-weighted mid-rank in the chunk (graphs sorted by size, each spanning its share
    of the nodes) and ε_i ~ N(0, 1), so u stays about uniform over the chunk's nodes (the pooled histogram is
    kept, up to each graph's cap) while larger graphs draw larger degrees. ρ = 0 draws independently of size (the default, the same draws as
    before the option existed)."""
    B, N = len(num_nodes), int(num_nodes.max())
    p = p.to(gen.device)
    k = torch.arange(len(p), device=gen.device)
    out = torch.zeros(B, N, device=gen.device)
    if coupling > 0:
        normal = torch.distributions.Normal(0.0, 1.0)
        sizes = num_nodes.to(gen.device).double()
        order = torch.argsort(sizes, stable=True)
        mid = torch.empty_like(sizes)
        mid[order] = (torch.cumsum(sizes[order], 0) - sizes[order] / 2) / sizes.sum()  # node-weighted mid-rank
        z = normal.icdf(mid)  # [B]
        eps = torch.randn(B, N, generator=gen, device=gen.device, dtype=torch.float64)
        u = normal.cdf(coupling * z.unsqueeze(1) + math.sqrt(1 - coupling ** 2) * eps)  # [B, N]
    for g, n in enumerate(num_nodes.tolist()):
        q = p * (k <= n - 1)
        q = q / q.sum() if q.sum() > 0 else (k <= n - 1).float() / n
        if coupling > 0:
            cdf = torch.cumsum(q.double(), 0)
            out[g, :n] = torch.searchsorted(cdf, u[g, :n].contiguous() * cdf[-1]).clamp(max=n - 1).float()
        else:
            out[g, :n] = torch.multinomial(q, n, replacement=True, generator=gen).float()
    return out


def beta_model_logits(degrees: Tensor, num_nodes: Tensor, iters: int = 300) -> Tensor:
    """Pair logits α_ij = a_i + a_j: [B, N, N] with Σ_{j≠i} σ(α_ij) ≈ degrees_i over the real nodes (degrees: [B, N]).

    Targets are clamped to [0.05, n_g − 1.05], so isolated or complete nodes get finite logits. The fixed point
    a_i ← log d_i − log Σ_{j≠i} e^{a_j}/(1 + e^{a_i + a_j}) converges for targets inside the polytope of degree
    sequences; elsewhere it stops after `iters` at the nearest fit."""
    B, N = degrees.shape
    num_nodes = num_nodes.to(degrees.device)
    mask = torch.arange(N, device=degrees.device) < num_nodes.unsqueeze(1)  # [B, N]
    pair = (mask.unsqueeze(2) & mask.unsqueeze(1)) & ~torch.eye(N, dtype=torch.bool, device=degrees.device)
    n = num_nodes.double().view(B, 1)
    d = degrees.double().clamp(min=0.05).minimum(n - 1.05).clamp(min=0.05)
    a = torch.log(d / (n - 1).clamp(min=1)) / 2  # uniform-density start: σ(2a) ≈ density
    for _ in range(iters):
        s = a.unsqueeze(2) + a.unsqueeze(1)
        terms = torch.where(pair, torch.exp(a.unsqueeze(1) - torch.nn.functional.softplus(s)), 0.0)
        a_new = torch.log(d) - torch.log(terms.sum(2).clamp(min=1e-12))
        a_new = torch.where(mask, a_new, 0.0)
        if (a_new - a).abs().max() < 1e-6:
            a = a_new
            break
        a = a_new
    logits = (a.unsqueeze(2) + a.unsqueeze(1)).float()
    return logits.masked_fill(~pair, -30.0)
