"""Batch-norm input statistics: forward hooks on every BatchNorm1d of a model.

`bn_input_statistics` runs a model in eval mode over graphs and returns, per BN layer, the mean and biased variance
of the layer's input over all real nodes: the teacher metadata's `bn_eval_stats` (protocol.md §1, acgkd.md §7).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def bn_layers(model: nn.Module) -> dict[str, nn.BatchNorm1d]:
    """Every BatchNorm1d of `model` by its module name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm1d)}


@torch.no_grad()
def bn_input_statistics(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, Tensor]:
    """Mean and biased variance of every BN layer's input over all nodes of `batches` (model in eval mode).

    Returns:
        {"<layer>.mean": [C_l], "<layer>.var": [C_l]} for each BN layer l.
    """
    sums: dict[str, list] = {}

    def hook(name: str):
        def fn(_mod: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            x = inputs[0].double()  # [n, C_l]
            s = sums.setdefault(name, [0, 0.0, 0.0])
            s[0] += x.size(0)
            s[1] = s[1] + x.sum(0)
            s[2] = s[2] + (x * x).sum(0)
        return fn

    was_training = model.training
    model.eval()
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in bn_layers(model).items()]
    try:
        for batch in batches:
            batch = batch.to(device)
            model(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for name, (n, s1, s2) in sums.items():
        mean = s1 / n
        out[f"{name}.mean"] = mean.float().cpu()
        out[f"{name}.var"] = (s2 / n - mean * mean).clamp(min=0).float().cpu()
    return out
