"""The benchmark table: test accuracy per dataset and method, mean ± std over the splits of a grid of runs.

A grid cell is one pipeline run (dataset × generator × split). Its metrics are the merged headline metrics of its
stages; each method reads the evaluate stage's number when present and the producing stage's number otherwise:

    >>> cells = [CellResult("MUTAG", "acgkd", s, {"teacher/test/acc": a, "distill/test/acc": a - 0.1})
    ...          for s, a in [(0, 0.9), (1, 0.8)]]
    >>> [(r.method, r.generator, round(r.mean, 2), r.n) for r in aggregate(cells)]
    [('teacher', None, 0.85, 2), ('pseudo', 'acgkd', 0.75, 2)]
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    metrics: tuple[str, ...]  # the first one a cell has is read
    per_generator: bool  # False: the same model in every generator's cell of a split (teacher, real-data students)


METHODS: tuple[Method, ...] = (
    Method("majority", "majority class", ("evaluate/test/acc_majority", "teacher/test/majority_acc"), False),
    Method("teacher", "teacher", ("evaluate/test/acc_teacher", "teacher/test/acc"), False),
    Method("student_real", "student, CE on real graphs",
           ("evaluate/test/acc_student_real", "distill/test/acc_student_real"), False),
    Method("kd_real", "student, KD on real graphs", ("evaluate/test/acc_kd_real", "distill/test/acc_kd_real"), False),
    Method("pseudo", "data-free student", ("evaluate/test/acc_pseudo", "distill/test/acc"), True),
    Method("group_mean", "group, mean over students", ("evaluate/test/acc_group_mean", "group/test/acc_mean"), True),
    Method("group_picked", "group, student picked on held-out pseudo-graphs",
           ("evaluate/test/acc_group_picked", "group/test/acc_picked"), True),
    Method("group_ensemble", "group ensemble", ("evaluate/test/acc_group_ensemble", "group/test/acc_ensemble"), True),
)


@dataclass(frozen=True)
class CellResult:
    """The metrics of one finished grid cell."""

    dataset: str
    generator: str
    split: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TableRow:
    dataset: str
    method: str
    label: str
    generator: str | None  # None for methods that do not depend on the generator
    values: tuple[float, ...]  # one per split, in split order
    splits: tuple[int, ...]
    runs: int  # cells that contributed (a generator-free method is read from every generator's cell)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Population standard deviation over splits (as gfkd/report.py)."""
        m = self.mean
        return (sum((v - m) ** 2 for v in self.values) / len(self.values)) ** 0.5

    @property
    def name(self) -> str:
        return f"{self.label} ({self.generator})" if self.generator else self.label


def _read(metrics: dict[str, float], method: Method) -> float | None:
    for key in method.metrics:
        if key in metrics:
            return float(metrics[key])
    return None


def aggregate(cells: list[CellResult]) -> list[TableRow]:
    """One row per dataset × method (× generator for the methods that depend on it), over the cells that have it.

    A generator-free method (teacher, real-data students) is the same model in every generator's cell of a split:
    its value per split is the mean over those cells, so each split counts once.
    """
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    generators = list(dict.fromkeys(c.generator for c in cells))
    rows: list[TableRow] = []
    for ds in datasets:
        for method in METHODS:
            for gen in generators if method.per_generator else [None]:
                per_split: dict[int, list[float]] = {}
                for c in cells:
                    if c.dataset != ds or (gen is not None and c.generator != gen):
                        continue
                    v = _read(c.metrics, method)
                    if v is not None:
                        per_split.setdefault(c.split, []).append(v)
                if not per_split:
                    continue
                splits = tuple(sorted(per_split))
                rows.append(TableRow(ds, method.key, method.label, gen,
                                     tuple(sum(per_split[s]) / len(per_split[s]) for s in splits), splits,
                                     sum(len(v) for v in per_split.values())))
    return rows


def markdown_table(rows: list[TableRow]) -> str:
    """Methods as rows, datasets as columns; each entry `mean ± std (n)` in percent."""
    if not rows:
        return "(no finished cell yet)\n"
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    order = {m.key: i for i, m in enumerate(METHODS)}
    gens = list(dict.fromkeys(r.generator for r in rows))
    names = list(dict.fromkeys(r.name for r in sorted(rows, key=lambda r: (order[r.method], gens.index(r.generator)))))
    by = {(r.name, r.dataset): r for r in rows}
    out = ["| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for name in names:
        entries = []
        for ds in datasets:
            r = by.get((name, ds))
            entries.append(f"{100 * r.mean:.2f} ± {100 * r.std:.2f} ({r.n})" if r else "—")
        out.append(f"| {name} | " + " | ".join(entries) + " |")
    return "\n".join(out) + "\n"


def table_metrics(rows: list[TableRow]) -> dict[str, float]:
    """Flat MLflow metrics: `benchmark/<dataset>/<method>[-<generator>]/test/acc_mean|acc_std|n`."""
    out: dict[str, float] = {}
    for r in rows:
        base = f"benchmark/{r.dataset}/{r.method}" + (f"-{r.generator}" if r.generator else "")
        out |= {f"{base}/test/acc_mean": r.mean, f"{base}/test/acc_std": r.std, f"{base}/test/n": float(r.n)}
    return out


def report_markdown(name: str, command: str | None, word: str, finished: int, cells: int, failed: list[str],
                    folder: str, real_group: bool, rows: list[TableRow]) -> str:
    """The benchmark's results page: its command, how many cells finished (and which failed), and the table."""
    return (f"# Benchmark `{name}`: test accuracy (%)\n\n"
            + (f"Command: `{command}`\n\n" if command else "")
            + f"Mean ± population std over {word} (n per entry); {finished} of {cells} cells finished"
            + (f"; failed: {', '.join(failed)} (rerun the same command to resume them)" if failed else "")
            + f". Each cell is one pipeline run in `{folder}/<cell>`.\n\n"
            + ("The group rows ran on the real training graphs (`group.graph.data=real`): with-data reference rows at "
               "the val-selected epoch, not data-free, whatever their generator column says.\n\n"
               if real_group else "") + markdown_table(rows))
