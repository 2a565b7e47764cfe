"""The three honest numbers of a group (oad.md §8) and their summary over seeds.

Selection epoch ê = the distillation-phase epoch with the highest mean validation accuracy over the K students
(ties: earliest); every student is evaluated at ê. Per seed:
- mean over students: (1/K) Σ_k acc_test(f_k);
- best student chosen on validation: the k with the highest validation accuracy at ê (ties: lowest k), its test
  accuracy;
- ensemble: argmax of (1/K) Σ_k softmax(z_k).
The student that is best on test is never reported.

    >>> val = np.array([[0.5, 0.6], [0.7, 0.6]]); test = np.array([[0.4, 0.5], [0.8, 0.9]])
    >>> group_numbers(val, test, np.array([0.5, 0.85]))["best_val_student"]
    0
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

NUMBERS = ("mean_students", "val_best_student", "ensemble")
LABELS = {"mean_students": "mean over students", "val_best_student": "val-best student", "ensemble": "ensemble"}


def ensemble_probs(logits: Tensor) -> Tensor:
    """logits: [K, N, C] → (1/K) Σ_k softmax(z_k): [N, C] (rows sum to 1)."""
    return logits.softmax(-1).mean(0)


def select_epoch(val_acc: np.ndarray, start: int = 0) -> int:
    """val_acc: [epochs, K] → ê, the epoch ≥ start with the highest mean over students (ties: earliest)."""
    mean = np.asarray(val_acc, dtype=float)[start:].mean(1)
    return start + int(np.argmax(mean))  # argmax returns the first maximum


def group_numbers(val_acc: np.ndarray, test_acc: np.ndarray, ensemble_test: np.ndarray, start: int = 0) -> dict:
    """val_acc, test_acc: [epochs, K]; ensemble_test: [epochs] → the three numbers at ê plus what chose them."""
    val_acc, test_acc = np.asarray(val_acc, dtype=float), np.asarray(test_acc, dtype=float)
    e = select_epoch(val_acc, start)
    best = int(np.argmax(val_acc[e]))  # ties: lowest k
    return {"epoch": e, "best_val_student": best,
            "mean_students": float(test_acc[e].mean()),
            "val_best_student": float(test_acc[e, best]),
            "ensemble": float(np.asarray(ensemble_test, dtype=float)[e]),
            "val_mean_students": float(val_acc[e].mean())}


def summarize(per_seed: list[dict]) -> dict:
    """Per-seed dicts of `group_numbers` → {number: {"mean", "std", "n"}}, std with ddof = 0 (population)."""
    out = {}
    for key in NUMBERS:
        vals = np.array([r[key] for r in per_seed], dtype=float)
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(vals.size)}
    return out


def cell(stats: dict | None, scale: float = 100.0) -> str:
    """{"mean", "std", "n"} → '81.23 ± 0.45' (percent)."""
    if not stats:
        return "—"
    return f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"


def markdown_table(rows: list[tuple[str, dict | None]], note: str = "") -> str:
    """[(row label, summarize(...) or None)] → a Markdown table of the three numbers (test accuracy, %)."""
    head = "| method | " + " | ".join(LABELS[k] for k in NUMBERS) + " | seeds |"
    lines = [head, "|---|" + "---|" * (len(NUMBERS) + 1)]
    for label, stats in rows:
        if stats is None:
            lines.append(f"| {label} | " + " | ".join("—" for _ in NUMBERS) + f" | {note or '—'} |")
        else:
            lines.append(f"| {label} | " + " | ".join(cell(stats[k]) for k in NUMBERS)
                         + f" | {stats[NUMBERS[0]]['n']} |")
    return "\n".join(lines) + "\n"
