"""Supervised training of a graph classifier with validation-loss selection (protocol.md §4).

Keeps the epoch with the lowest validation loss (ties: higher validation accuracy, then the earlier epoch); with no
validation set, the last epoch. Test data never enters this loop: `evaluate` is called on it once, afterwards.
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from gfkd.errors import StageError
from gfkd.io.checkpoint import load_training_state, save_training_state


@dataclass
class EvalResult:
    loss: float
    acc: float
    n: int


@dataclass
class FitResult:
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> EvalResult:
    """Mean cross-entropy (no smoothing) and accuracy of `model` in eval mode over `loader`."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for batch in loader:
        batch = batch.to(device)
        logits = model(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
        loss_sum += F.cross_entropy(logits, batch.y, reduction="sum").item()
        correct += int((logits.argmax(-1) == batch.y).sum())
        n += batch.num_graphs
    return EvalResult(loss=loss_sum / max(n, 1), acc=correct / max(n, 1), n=n)


COLLAPSED_SHARE = 0.95  # a model that puts this share of a split's graphs in one class has collapsed


def top_class_share(pred: torch.Tensor) -> float:
    """The share of the most predicted class among pred: [n] class indices (0.0 for none)."""
    return float(torch.bincount(pred.view(-1)).max()) / pred.numel() if pred.numel() else 0.0


def seed_agreement(preds: list[np.ndarray]) -> float:
    """Mean share of equal predictions over every pair of student seeds (1.0 for a single seed); preds: [n] each."""
    pairs = [float((a == b).mean()) for a, b in itertools.combinations(preds, 2)]
    return float(np.mean(pairs)) if pairs else 1.0


@torch.no_grad()
def logits_of(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode logits [n, C] and labels [n] of `model` over `loader` (on the CPU)."""
    model.eval()
    zs, ys = [], []
    for b in loader:
        b = b.to(device)
        zs.append(model(b.x, b.edge_index, b.batch, b.num_graphs).cpu())
        ys.append(b.y.view(-1).cpu())
    return torch.cat(zs), torch.cat(ys)


def _is_better(cand: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """Lower val loss wins; ties go to higher val accuracy; remaining ties keep the earlier epoch."""
    if best is None:
        return True
    return cand[0] < best[0] or (cand[0] == best[0] and cand[1] > best[1])


def fit_classifier(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None, *, epochs: int,
                   lr: float, weight_decay: float, lr_step: int, lr_gamma: float, label_smoothing: float,
                   device: torch.device, stage: str = "teacher",
                   on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                   checkpoint: Path | None = None, checkpoint_every: int = 5) -> FitResult:
    """Train with Adam + step decay; select the epoch by validation loss.

    Args:
        on_epoch: called as on_epoch(epoch, metrics) with keys `stage/split/metric` (on a resume, first for every
            epoch restored from the checkpoint).
        checkpoint: a file to save the training state to every `checkpoint_every` epochs (model, optimiser,
            scheduler, RNG and data-order generator states, selection and history; tensors and primitives only)
            and to resume from when it exists; the resumed result is bitwise that of an uninterrupted run.
    Raises:
        StageError: when the training loss becomes non-finite (names stage, epoch, step and the likely cause).
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    result = FitResult(best_epoch=-1, best_state={})
    best: tuple[float, float] | None = None
    loader_gen = getattr(train_loader, "generator", None)
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_training_state(Path(checkpoint))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if loader_gen is not None:
            loader_gen.set_state(state["loader_rng"])
        best = tuple(state["best"]) if state["best"] is not None else None
        result.best_epoch, result.best_state, result.history = state["best_epoch"], state["best_state"], state["history"]
        start = state["epoch"] + 1
        for e, metrics in enumerate(result.history):
            if on_epoch is not None:
                on_epoch(e, metrics)
    bar = tqdm(range(start, epochs), desc=stage, unit="epoch", disable=not sys.stderr.isatty(), leave=False)
    for epoch in bar:
        model.train()
        loss_sum, correct, n = 0.0, 0, 0
        for step, batch in enumerate(train_loader):
            batch = batch.to(device)
            logits = model(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
            loss = F.cross_entropy(logits, batch.y, label_smoothing=label_smoothing)
            if not torch.isfinite(loss):
                cause = ("the input features hold NaN/inf: fix the dataset files" if not torch.isfinite(batch.x).all()
                         else f"lower {stage}.lr (now {lr})")
                raise StageError(f"{stage}: non-finite training loss at epoch {epoch}, step {step}: {cause}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * batch.num_graphs
            correct += int((logits.argmax(-1) == batch.y).sum())
            n += batch.num_graphs
        sched.step()
        metrics = {f"{stage}/train/loss": loss_sum / n, f"{stage}/train/acc": correct / n,
                   f"{stage}/train/lr": opt.param_groups[0]["lr"]}
        if val_loader is not None:
            v = evaluate(model, val_loader, device)
            metrics |= {f"{stage}/val/loss": v.loss, f"{stage}/val/acc": v.acc}
            key = (v.loss, v.acc)
        else:
            key = (-float(epoch), 0.0)  # no validation: the last epoch wins
        if math.isfinite(key[0]) and _is_better(key, best):
            best, result.best_epoch = key, epoch
            result.best_state = copy.deepcopy(model.state_dict())
        result.history.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        bar.set_postfix(loss=f"{metrics[f'{stage}/train/loss']:.3f}",
                        val=f"{metrics.get(f'{stage}/val/acc', float('nan')):.3f}")
        if checkpoint is not None and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
            save_training_state(Path(checkpoint), {
                "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                "loader_rng": loader_gen.get_state() if loader_gen is not None else None,
                "best": list(best) if best is not None else None, "best_epoch": result.best_epoch,
                "best_state": result.best_state, "history": result.history})
    return result

