"""Batch-norm statistics matching (DeepInversion, arXiv 1912.08795; acgkd.md §7).

Forward pre-hooks on every BatchNorm1d of the (eval-mode) teacher record the mean μ̂ and biased variance σ̂² of the
layer's input over the real nodes of the batch (the model only ever feeds real nodes to BN); `loss()` compares them
with target statistics (μ, σ²):

    relative:  Σ_l [ mean_c ((μ̂ − μ)/√(σ² + ε))² + mean_c (log((σ̂² + ε)/(σ² + ε)))² ]   (scale-free, default)
    l2:        Σ_l ( ‖μ − μ̂‖₂ + ‖σ² − σ̂²‖₂ )         l2sq: the same with squared norms
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gfkd.errors import CheckpointError
from gfkd.models.bn_stats import bn_layers


def bn_targets(model: nn.Module, mode: str, eval_stats: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per BN layer l, (mean [C_l], var [C_l]) to match: `running` buffers, stored `eval` statistics, or `auto`
    (eval if stored)."""
    layers = bn_layers(model)
    if mode == "auto":
        mode = "eval" if eval_stats else "running"
    if mode == "eval":
        missing = [n for n in layers if f"{n}.mean" not in eval_stats]
        if missing:
            raise CheckpointError(f"teacher checkpoint lacks eval BN statistics for {missing[0]}: "
                                  f"use generate.bn_target=running or retrain the teacher (gfkd run --force teacher)")
        return {n: (eval_stats[f"{n}.mean"], eval_stats[f"{n}.var"]) for n in layers}
    return {n: (m.running_mean.detach().clone(), m.running_var.detach().clone()) for n, m in layers.items()}


class _MeanVar(torch.autograd.Function):
    """(mean, biased variance) over dim 0 of x: [n, C], computed as (x − μ̂)².mean(0). Saves only x (which the BN
    layer keeps for its own backward anyway) and μ̂, where autograd through the formula would keep the extra [n, C]
    tensor x − μ̂ per BN layer. ∂var/∂x_i = 2(x_i − μ̂)/n (the term through μ̂ sums to zero)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = x.mean(0)
        var = (x - mean).pow_(2).mean(0)
        ctx.save_for_backward(x, mean)
        return mean, var

    @staticmethod
    def backward(ctx, g_mean: Tensor, g_var: Tensor) -> Tensor:
        x, mean = ctx.saved_tensors
        n = x.size(0)
        return (x - mean).mul_(g_var * (2.0 / n)).add_(g_mean / n)


def mean_var(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over dim 0 (differentiable; see `_MeanVar`)."""
    return _MeanVar.apply(x)


def relative_term(mu_hat: Tensor, var_hat: Tensor, mu: Tensor, var: Tensor, eps: float) -> Tensor:
    """One layer's relative R_BN term (acgkd.md §7): mean_c ((μ̂ − μ)/√(σ² + ε))² + mean_c log((σ̂² + ε)/(σ² + ε))²."""
    return ((mu_hat - mu) / torch.sqrt(var + eps)).pow(2).mean() + torch.log((var_hat + eps) / (var + eps)).pow(2).mean()


class BNMatcher:
    """Hooks that record BN input statistics during a forward pass and score them against targets. Set `recording`
    to False around a backward pass that recomputes checkpointed layers, so the recomputation does not replace the
    statistics of the forward pass (nor keep the recomputed tensors alive after the step)."""

    def __init__(self, model: nn.Module, targets: dict[str, tuple[Tensor, Tensor]], form: str = "relative",
                 first_weight: float = 1.0):
        self.form = form
        self.layers = bn_layers(model)
        self.weights = {n: (first_weight if i == 0 else 1.0) for i, n in enumerate(self.layers)}
        self.targets = targets
        self.stats: dict[str, tuple[Tensor, Tensor]] = {}
        self.recording = True
        self._handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in self.layers.items()]

    def _hook(self, name: str):
        def fn(_mod: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            stats = mean_var(inputs[0])  # inputs[0]: [n_real, C_l]; biased variance
            if self.recording:  # a recomputation still runs mean_var: the checkpoint replays the same saved tensors
                self.stats[name] = stats
        return fn

    def loss(self) -> Tensor:
        """R_BN of the last forward pass (a scalar with gradient); the first layer's term times `first_weight`."""
        total = None
        for name, (mu_hat, var_hat) in self.stats.items():
            mu, var = (t.to(mu_hat) for t in self.targets[name])
            eps = self.layers[name].eps
            if self.form == "relative":
                term = relative_term(mu_hat, var_hat, mu, var, eps)
            elif self.form == "l2":
                term = torch.linalg.vector_norm(mu - mu_hat) + torch.linalg.vector_norm(var - var_hat)
            else:  # l2sq
                term = (mu - mu_hat).pow(2).sum() + (var - var_hat).pow(2).sum()
            if self.weights[name] != 1.0:
                term = self.weights[name] * term
            total = term if total is None else total + term
        if total is None:
            raise RuntimeError("BNMatcher.loss() called before a forward pass through a model with BatchNorm")
        return total

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "BNMatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
