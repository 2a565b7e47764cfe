"""Figure-returning plot functions: no savefig, no show, no backend switching (the caller saves or logs)."""

from __future__ import annotations

from matplotlib.figure import Figure


def training_curve(history: list[dict[str, float]], stage: str, best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch for the train and val splits; a dashed line marks the selected epoch.

    Args:
        history: one dict per epoch with keys `stage/split/metric`.
    """
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    epochs = list(range(len(history)))
    for ax, metric in zip(axes, ("loss", "acc")):
        for split in ("train", "val"):
            key = f"{stage}/{split}/{metric}"
            ys = [h.get(key) for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, label=split)
        if best_epoch is not None and best_epoch >= 0:
            ax.axvline(best_epoch, ls="--", c="gray", lw=1, label=f"selected (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{stage}/*/{metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{stage}: training curve")
    return fig
