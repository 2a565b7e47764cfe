"""Binary Concrete (relaxed Bernoulli) edges on the strict upper triangle (acgkd.md §3).

Per pair logit α and logistic noise ℓ = log u − log(1 − u), temperature κ:
    s = σ((α + ℓ)/κ)            soft sample in (0, 1)
    h = 1[α + ℓ > 0]            hard sample, exactly Bernoulli(σ(α)) for every κ
    a = h + s − sg(s)           straight-through: forward h, backward ∂s/∂α = s(1 − s)/κ
(Concrete distribution, arXiv 1611.00712; straight-through estimator, arXiv 1308.3432.)
"""

from __future__ import annotations

import torch
from torch import Tensor


def logistic_noise(shape: tuple[int, ...], generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """ℓ = log u − log(1 − u), u ~ U(0, 1), clamped away from 0 and 1."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


def concrete_sample(alpha: Tensor, kappa: float, noise: Tensor, hard: bool = True) -> Tensor:
    """A Binary Concrete sample of `alpha` (any shape): straight-through 0/1 (hard) or the soft relaxation."""
    s = torch.sigmoid((alpha + noise) / kappa)
    if not hard:
        return s
    h = (alpha + noise > 0).to(alpha.dtype)
    return h + (s - s.detach())  # exactly h in the forward pass


def triu_pairs(n: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Row and column indices of the strict upper triangle of an n×n matrix: two [n(n−1)/2] tensors."""
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def real_pairs(num_nodes: Tensor, n: int) -> Tensor:
    """mask [B, P]: the pair (i, j), i < j, joins two real nodes of graph b (num_nodes: [B])."""
    i, j = triu_pairs(n, num_nodes.device)
    return (j.unsqueeze(0) < num_nodes.unsqueeze(1))  # j > i, so j real implies i real


def pairs_to_adjacency(values: Tensor, n: int) -> Tensor:
    """values: [B, P] on the strict upper triangle → symmetric adjacency [B, N, N] with zero diagonal."""
    i, j = triu_pairs(n, values.device)
    adj = values.new_zeros(values.size(0), n, n)
    adj[:, i, j] = values
    return adj + adj.transpose(1, 2)


def geometric_kappa(step: int, total: int, kappa0: float, kappa1: float) -> float:
    """κ_t = κ_0·(κ_1/κ_0)^{t/(T−1)}."""
    return kappa0 * (kappa1 / kappa0) ** (step / max(total - 1, 1))
