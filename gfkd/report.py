"""The evaluate stage's results table and Markdown report (protocol.md §6, §7): rows side by side, a value or "—"
with the reason, the run count of every cell; beside it the pseudo-graphs' cost and quality."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    key: str  # metric suffix: evaluate/test/acc_<key>
    accs: list[float]  # one per model of the row (student seeds, group students); [] when it did not run
    params: int | None = None
    wall_s: float | None = None
    note: str = ""  # why the row did not run (shown in place of the accuracy)
    val_selected: list[float] = field(default_factory=list)  # data-free rows: test accuracy at the val-selected epoch
    agreement: float | None = None  # mean share of test graphs two of the row's models put in the same class (n ≥ 2)
    collapsed: int | None = None  # the row's models that put ≥ 95 % of the test graphs in one class
    parts: dict[str, int] | None = None  # the parameters by part, where there are several (body, projector, head)

    @property
    def mean(self) -> float:
        return sum(self.accs) / len(self.accs)

    @property
    def std(self) -> float:
        return _std(self.accs)

    def cell(self) -> str:
        if not self.accs:
            return f"— ({self.note or 'did not run'})"
        return _mean_std(self.accs)


def _std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return (sum((a - m) ** 2 for a in xs) / len(xs)) ** 0.5


def _mean_std(xs: list[float]) -> str:
    return f"{sum(xs) / len(xs):.3f} ± {_std(xs):.3f} (n={len(xs)})"


def _params(r: Row) -> str:
    if r.params is None:
        return "—"
    parts = {k: v for k, v in (r.parts or {}).items() if v}  # a plain student's projector is 0: not a part
    if len(parts) < 2:
        return f"{r.params:,}"
    return f"{r.params:,} ({' + '.join(f'{k} {v:,}' for k, v in parts.items())})"


def markdown_table(rows: list[Row]) -> str:
    out = ["| row | test accuracy | val-selected (uses real validation labels) | seed agreement | collapsed | "
           "parameters | wall time s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        val = _mean_std(r.val_selected) if r.val_selected else "—"
        agree = f"{r.agreement:.3f}" if r.agreement is not None else "—"
        collapsed = f"{r.collapsed} of {len(r.accs)}" if r.collapsed is not None and r.accs else "—"
        wall = f"{r.wall_s:.1f}" if r.wall_s is not None else "—"
        out.append(f"| {r.name} | {r.cell()} | {val} | {agree} | {collapsed} | {_params(r)} | {wall} |")
    return "\n".join(out) + "\n"


def markdown_report(title: str, facts: dict[str, str], rows: list[Row], figures: list[str],
                    pseudo_graphs: dict[str, str] | None = None, pseudo_title: str = "Pseudo-graphs") -> str:
    """The whole report: a header of facts (device, versions, config hash, command), the table, the pseudo-graphs'
    cost and quality (measure → value, protocol.md §6's generator columns), the figures."""
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += ["", markdown_table(rows), "Data-free rows report the last epoch (no real label used), and beside it the "
              "same models at their epoch of lowest validation loss; real-data rows the epoch of lowest validation "
              "loss; n counts student seeds or group students. Seed agreement: the mean share of test graphs on which "
              "two of the row's models predict the same class; collapsed: models that put at least 95 % of the test "
              "graphs in one class. Wall time: the stages that made the row; a data-free row's includes its generate "
              "stage.", ""]
    if pseudo_graphs:
        lines += [f"## {pseudo_title}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in pseudo_graphs.items()]
        lines += [""]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"
