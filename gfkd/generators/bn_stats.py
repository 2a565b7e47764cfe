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
    """Per BN layer (mean, var) to match: `running` buffers, stored `eval` statistics, or `auto` (eval if stored)."""
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


class BNMatcher:
    """Hooks that record BN input statistics during a forward pass and score them against targets."""

    def __init__(self, model: nn.Module, targets: dict[str, tuple[Tensor, Tensor]], form: str = "relative"):
        self.form = form
        self.layers = bn_layers(model)
        self.targets = targets
        self.stats: dict[str, tuple[Tensor, Tensor]] = {}
        self._handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in self.layers.items()]

    def _hook(self, name: str):
        def fn(_mod: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            x = inputs[0]  # [n_real, C_l]
            mean = x.mean(0)
            var = (x - mean).pow(2).mean(0)  # biased; cheaper than torch.var on CPU
            self.stats[name] = (mean, var)
        return fn

    def loss(self) -> Tensor:
        """R_BN of the last forward pass (a scalar with gradient)."""
        total = None
        for name, (mu_hat, var_hat) in self.stats.items():
            mu, var = (t.to(mu_hat) for t in self.targets[name])
            eps = self.layers[name].eps
            if self.form == "relative":
                term = ((mu_hat - mu) / torch.sqrt(var + eps)).pow(2).mean() + \
                    torch.log((var_hat + eps) / (var + eps)).pow(2).mean()
            elif self.form == "l2":
                term = torch.linalg.vector_norm(mu - mu_hat) + torch.linalg.vector_norm(var - var_hat)
            else:  # l2sq
                term = (mu - mu_hat).pow(2).sum() + (var - var_hat).pow(2).sum()
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
