"""Knowledge-distillation losses: temperature KL and the dynamic adversarial temperature (acgkd.md §9).

    L_KD(τ) = τ²·Σ_g w_g·KL(p_T,g^τ ‖ p_S,g^τ) / Σ_g w_g

The temperature τ = τ_min + τ_range·σ(t) is learnable; t reaches the loss through a gradient-reversal layer, so one
backward pass moves the student down the KD loss and t up it (CTKD, arXiv 2211.16231). The adversary's strength
λ_e follows a cosine ramp over epochs and scales t's own Adam step (Adam would normalise a scaled gradient away).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kd_kl(z_s: Tensor, z_t: Tensor, tau: Tensor | float, weight: Tensor | None = None) -> Tensor:
    """τ²-scaled KL(p_T^τ ‖ p_S^τ) averaged over graphs (weighted when `weight` is given).

    Args:
        z_s, z_t: student and teacher logits [B, C] (z_t carries no gradient).
        tau: a scalar, or per-graph temperatures [B].
        weight: per-graph weights [B] or None.
    """
    tau = torch.as_tensor(tau, dtype=z_s.dtype, device=z_s.device)
    t = tau.view(-1, 1) if tau.dim() else tau
    log_ps = F.log_softmax(z_s / t, dim=-1)
    log_pt = F.log_softmax(z_t.detach() / t, dim=-1)
    per_graph = (log_pt.exp() * (log_pt - log_ps)).sum(-1) * tau ** 2  # [B]
    if weight is None:
        return per_graph.mean()
    return (per_graph * weight).sum() / weight.sum().clamp_min(1e-12)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return -grad


def grad_reverse(x: Tensor) -> Tensor:
    """Identity forward, negated gradient backward (arXiv 1409.7495)."""
    return _GradReverse.apply(x)


def ramp(epoch: int, lambda_max: float, ramp_epochs: int) -> float:
    """λ_e = λ_max·(1 − cos(π·min(e, E_λ)/E_λ))/2: 0 at e = 0, λ_max from e = E_λ, non-decreasing."""
    return lambda_max * (1 - math.cos(math.pi * min(epoch, ramp_epochs) / ramp_epochs)) / 2


class Temperature(nn.Module):
    """The KD temperature of a distillation run: fixed, or learnable and adversarial (global or per graph).

    Args:
        mode: "fixed" | "global" | "instance" | "ctkd_paper" (global with τ_range = 20 and t_0 = 0).
        num_classes: C, the width of each logit vector (instance mode's MLP reads [z_T, z_S]).
    """

    def __init__(self, mode: str = "global", value: float = 2.0, tau_min: float = 1.0, tau_range: float = 9.0,
                 tau_init: float = 2.0, num_classes: int = 2):
        super().__init__()
        self.mode, self.value = mode, value
        if mode == "ctkd_paper":
            tau_range, t0 = 20.0, 0.0
        else:
            frac = (tau_init - tau_min) / tau_range
            if not 0 < frac < 1:
                raise ValueError(f"tau_init={tau_init} must lie inside (tau_min, tau_min + tau_range)")
            t0 = math.log(frac / (1 - frac))
        self.tau_min, self.tau_range = tau_min, tau_range
        if mode in ("global", "ctkd_paper"):
            self.t = nn.Parameter(torch.tensor(t0))
        elif mode == "instance":
            self.mlp = nn.Sequential(nn.Linear(2 * num_classes, 16), nn.ReLU(), nn.Linear(16, 1))
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.constant_(self.mlp[2].bias, t0)
        elif mode != "fixed":
            raise ValueError(f"unknown temperature mode '{mode}'")

    @property
    def learnable(self) -> bool:
        return self.mode != "fixed"

    def forward(self, z_t: Tensor, z_s: Tensor) -> Tensor:
        """τ for a batch: a scalar tensor, or [B] in instance mode; gradient to t arrives reversed."""
        if self.mode == "fixed":
            return z_s.new_tensor(self.value)
        if self.mode == "instance":
            t = self.mlp(torch.cat([z_t, z_s], -1).detach()).squeeze(-1)  # [B]
        else:
            t = self.t
        return self.tau_min + self.tau_range * torch.sigmoid(grad_reverse(t))

    def current(self) -> float:
        """τ now (global modes), for logging; NaN in instance mode (it depends on the graph)."""
        if self.mode == "fixed":
            return self.value
        if self.mode == "instance":
            return float("nan")
        return float(self.tau_min + self.tau_range * torch.sigmoid(self.t.detach()))


def mean_top_probability(z_t: Tensor, tau: float) -> float:
    """Mean over graphs of max_c softmax(z_t / τ)_c; z_t: [M, C]. Non-increasing in τ (from 1 towards 1/C)."""
    return float(F.softmax(z_t.double() / tau, dim=-1).max(-1).values.mean())


def calibrated_tau(z_t: Tensor, confidence: float, lo: float, hi: float, steps: int = 60) -> float:
    """The smallest τ in [lo, hi] at which the teacher's mean top-class probability over `z_t` [M, C] is at most
    `confidence`: lo when it already is, hi when even hi leaves it above (bisection, to 1e-12 of the bracket)."""
    if not 0 < lo <= hi:
        raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
    if mean_top_probability(z_t, lo) <= confidence:
        return float(lo)
    if mean_top_probability(z_t, hi) > confidence:
        return float(hi)
    a, b = lo, hi  # p(a) > confidence >= p(b)
    for _ in range(steps):
        mid = (a + b) / 2
        a, b = (mid, b) if mean_top_probability(z_t, mid) > confidence else (a, mid)
    return float(b)


def class_balance_weights(pred: Tensor, num_classes: int, prior: Tensor | None = None) -> Tensor:
    """Weight per class of the teacher's predictions `pred` [M] → [C] (mean weight 1 per graph) that gives each class
    the share `prior` [C] of the total weight (default 1/C: inverse frequency). A class the teacher never predicted gets
    the largest weight of the others, not M/C: a graph of it redrawn later (adversarial rounds, augmentation) must not
    outweigh its whole batch."""
    counts = torch.bincount(pred, minlength=num_classes).float()
    if prior is None:
        w = counts.sum() / (num_classes * counts.clamp_min(1))
    else:
        w = counts.sum() * (prior.float() / prior.float().sum()) / counts.clamp_min(1)
    seen = counts > 0
    return torch.where(seen, w, w[seen].max() if seen.any() else torch.ones(()))
