"""The evaluate stage's results table and Markdown report (protocol.md §6, §7): rows side by side, a value or "—"
with the reason, the run count of every cell."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    name: str
    key: str  # metric suffix: evaluate/test/acc_<key>
    accs: list[float]  # one per model of the row (student seeds, group students); [] when it did not run
    params: int | None = None
    wall_s: float | None = None
    note: str = ""  # why the row did not run (shown in place of the accuracy)

    @property
    def mean(self) -> float:
        return sum(self.accs) / len(self.accs)

    @property
    def std(self) -> float:
        m = self.mean
        return (sum((a - m) ** 2 for a in self.accs) / len(self.accs)) ** 0.5

    def cell(self) -> str:
        if not self.accs:
            return f"— ({self.note or 'did not run'})"
        return f"{self.mean:.3f} ± {self.std:.3f} (n={len(self.accs)})"


def markdown_table(rows: list[Row]) -> str:
    out = ["| row | test accuracy | parameters | wall time s |", "|---|---|---|---|"]
    for r in rows:
        params = f"{r.params:,}" if r.params is not None else "—"
        wall = f"{r.wall_s:.1f}" if r.wall_s is not None else "—"
        out.append(f"| {r.name} | {r.cell()} | {params} | {wall} |")
    return "\n".join(out) + "\n"


def markdown_report(title: str, facts: dict[str, str], rows: list[Row], figures: list[str]) -> str:
    """The whole report: a header of facts (device, versions, config hash, command), the table, the figures."""
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += ["", markdown_table(rows), "Data-free rows report the last epoch (no real label used); real-data rows "
              "the epoch of lowest validation loss; n counts student seeds or group students. Wall time: the stages "
              "that made the row; a data-free row's includes its generate stage.", ""]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"
