"""Figure-returning plot functions: no savefig, no show, no backend switching (the caller saves or logs)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator


def _legend(ax) -> None:
    """A legend, unless nothing was drawn on `ax` (a panel whose keys were never logged; matplotlib warns then)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


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
        _legend(ax)
    fig.suptitle(f"{stage}: training curve")
    return fig


def pseudo_graph_grid(graphs: list[tuple[int, list[int], list[int], list[int]]], title: str, cols: int = 4) -> Figure:
    """Draw small graphs on circles: each item (num_nodes, src, dst, node colour index)."""
    import math

    rows = max(1, math.ceil(len(graphs) / cols))
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (n, src, dst, colour) in zip(axes.flat, graphs):
        ang = [2 * math.pi * k / max(n, 1) for k in range(n)]
        xs, ys = [math.cos(a) for a in ang], [math.sin(a) for a in ang]
        edges = set(zip(src, dst))
        for s, d in edges:
            if s < d or (d, s) not in edges:
                ax.plot([xs[s], xs[d]], [ys[s], ys[d]], c="0.6", lw=0.6, zorder=1)
        ax.scatter(xs, ys, c=colour, cmap="tab10", vmin=0, vmax=9, s=18, zorder=2)
        directed = any((d, s) not in edges for s, d in edges)  # GFKD's, or RandG's under randg.directed
        ax.set_title(f"n={n}, |E|={len(edges) if directed else len(edges) // 2}", fontsize=8)
        ax.set_aspect("equal")
    fig.suptitle(title)
    return fig


def degree_histogram(degrees: list[int], real_mean_degree: float, title: str) -> Figure:
    """Histogram of pseudo-graph node degrees with the teacher metadata's mean degree marked."""
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    top = max(degrees) if degrees else 1
    ax.hist(degrees, bins=range(0, top + 2), color="tab:blue", alpha=0.8, label="pseudo-graphs")
    ax.axvline(real_mean_degree, c="tab:red", ls="--", label=f"real mean degree {real_mean_degree:.2f}")
    ax.set_xlabel("node degree")
    ax.set_ylabel("nodes")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def distill_curves(history: list[dict[str, float]], stage: str = "distill") -> Figure:
    """Three panels per epoch: training losses; temperature τ and curriculum fraction; real val/test accuracy
    (logged only: the data-free student is neither trained nor selected on them)."""
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    epochs = list(range(len(history)))
    panels = [(("train/loss", "train/kd", "train/feat"), "loss"), (("train/tau", "train/fraction", "train/lambda"),
              "τ, curriculum fraction, λ"), (("val/acc", "test/acc"), "real accuracy (logged, not used)")]
    for ax, (keys, ylabel) in zip(axes, panels):
        for k in keys:
            ys = [h.get(f"{stage}/{k}") for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle(f"{stage}: student curves")
    return fig


LENGTHS = ("emb_norm", "emb_norm_ratio")  # the pseudo-graph group's embedding lengths: not loss terms


def group_curves(history: list[dict[str, float]], stage: str = "group") -> Figure:
    """Panels per epoch: the group's loss terms; mean-over-students and ensemble accuracy on the real validation and
    test graphs (logged only); where logged, the students' embedding lengths (mean, and longest over shortest)."""
    lengths = any(f"{stage}/train/{LENGTHS[0]}" in h for h in history)
    fig = Figure(figsize=(13.5 if lengths else 9, 3.4), layout="constrained")
    axes = fig.subplots(1, 3 if lengths else 2)
    epochs = list(range(len(history)))
    terms = sorted({k.rsplit("/", 1)[1] for h in history for k in h if f"{stage}/train/" in k} - set(LENGTHS))
    panels = [(axes[0], [f"train/{t}" for t in terms], "loss terms"),
              (axes[1], ["val/acc_mean", "test/acc_mean", "test/acc_ensemble"], "real accuracy")]
    if lengths:
        twin = axes[2].twinx()  # the ratio (about 1) beside the length (tens)
        ratio = [h.get(f"{stage}/train/{LENGTHS[1]}") for h in history]
        twin.plot(epochs, ratio, color="tab:red", linestyle="--", label="longest / shortest student")
        twin.set_ylabel("longest / shortest student")
        panels.append((axes[2], [f"train/{LENGTHS[0]}"], "mean ‖h_v‖ over students"))
    for ax, keys, ylabel in panels:
        for k in keys:
            ys = [h.get(f"{stage}/{k}") for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle(f"{stage}: pseudo-graph group")
    return fig


def confusion_matrices(mats: dict[str, list[list[int]]], title: str = "evaluate: confusion matrices (test)") -> Figure:
    """One panel per model: rows true class, columns predicted class, counts annotated."""
    import math

    cols = min(4, max(1, len(mats)))
    rows = max(1, math.ceil(len(mats) / cols))
    fig = Figure(figsize=(2.8 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, m) in zip(axes.flat, mats.items()):
        ax.set_axis_on()
        ax.imshow(m, cmap="Blues")
        for i, row in enumerate(m):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        ax.set_xticks(range(len(m)))
        ax.set_yticks(range(len(m)))
    fig.suptitle(title)
    return fig


def accuracy_vs_time(points: list[tuple[str, float, float]], title: str = "evaluate: accuracy vs wall time") -> Figure:
    """Scatter of (name, wall seconds, test accuracy): what each row cost against what it scored. Rows are told
    apart by colour and marker in a legend beside the axes: the group's three rows share one wall time, and labels
    written at the points printed over each other."""
    fig = Figure(figsize=(8.5, 3.8), layout="constrained")
    ax = fig.subplots()
    markers = "osD^v<>Ph*X"
    for i, (name, t, acc) in enumerate(points):
        ax.scatter([t], [acc], s=40, marker=markers[i % len(markers)], color=f"C{i % 10}", alpha=0.85,
                   label=f"{name}: {acc:.3f}, {t:.3g} s")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # "3×10⁻¹"-style minor labels collided
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("wall time, s (log)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if points:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def degree_comparison(real: list[int], pseudo: list[int], title: str = "evaluate: node degrees, real vs pseudo") -> Figure:
    """Normalised degree histograms of the real held-out graphs and of the pseudo-graphs."""
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    top = max([*real, *pseudo, 1])
    bins = range(0, min(top, 60) + 2)
    ax.hist(real, bins=bins, density=True, alpha=0.6, label=f"real test graphs (mean {sum(real) / max(len(real), 1):.2f})")
    ax.hist(pseudo, bins=bins, density=True, alpha=0.6, label=f"pseudo-graphs (mean {sum(pseudo) / max(len(pseudo), 1):.2f})")
    ax.set_xlabel("node degree")
    ax.set_ylabel("fraction of nodes")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig
