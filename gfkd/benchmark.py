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
    absent: str = ""  # why a finished cell can lack it (shown as "— (...)" where no cell has it)
    spread: tuple[str, ...] = ()  # the std within a cell (over student seeds or group students), first present
    collapsed: str = ""  # the cell's count of models that put ≥ 95 % of the test graphs in one class


VAL = "val-selected (uses real validation labels)"  # protocol.md §4's secondary number of a data-free row
NO_VAL = "no validation split (protocol.val=false)"
METHODS: tuple[Method, ...] = (
    Method("majority", "majority class", ("evaluate/test/acc_majority", "teacher/test/majority_acc"), False),
    Method("teacher", "teacher", ("evaluate/test/acc_teacher", "teacher/test/acc"), False),
    Method("student_real", "student, CE on real graphs",
           ("evaluate/test/acc_student_real", "distill/test/acc_student_real"), False, "not in distill.baselines",
           ("evaluate/test/acc_student_real_std", "distill/test/acc_std_student_real")),
    Method("kd_real", "student, KD on real graphs", ("evaluate/test/acc_kd_real", "distill/test/acc_kd_real"), False,
           "not in distill.baselines", ("evaluate/test/acc_kd_real_std", "distill/test/acc_std_kd_real")),
    Method("pseudo", "data-free student", ("evaluate/test/acc_pseudo", "distill/test/acc"), True, "",
           ("evaluate/test/acc_pseudo_std", "distill/test/acc_std"), "distill/test/collapsed"),
    Method("pseudo_val", f"data-free student, {VAL}", ("distill/test/acc_val_selected",), True, NO_VAL),
    Method("group_mean", "group, mean over students", ("evaluate/test/acc_group_mean", "group/test/acc_mean"), True,
           "", ("evaluate/test/acc_group_mean_std",), "group/test/collapsed"),
    Method("group_mean_val", f"group, mean over students, {VAL}", ("group/test/acc_mean_val_selected",), True,
           f"{NO_VAL}, or a with-data group, val-selected already"),
    Method("group_picked", "group, student picked on held-out pseudo-graphs",
           ("evaluate/test/acc_group_picked", "group/test/acc_picked"), True, collapsed="group/test/collapsed_picked"),
    Method("group_ensemble", "group ensemble", ("evaluate/test/acc_group_ensemble", "group/test/acc_ensemble"), True,
           collapsed="group/test/collapsed_ensemble"),
    Method("group_ensemble_val", f"group ensemble, {VAL}", ("group/test/acc_ensemble_val_selected",), True,
           f"{NO_VAL}, or a with-data group, val-selected already"),
)


@dataclass(frozen=True)
class CellResult:
    """The metrics of one finished grid cell."""

    dataset: str
    generator: str
    split: int
    metrics: dict[str, float] = field(default_factory=dict)
    fold_hash: str = ""  # the split's index lists, hashed (protocol.md §3): one per dataset and split


@dataclass(frozen=True)
class TableRow:
    dataset: str
    method: str
    label: str
    generator: str | None  # None for methods that do not depend on the generator
    values: tuple[float, ...]  # one per split, in split order
    splits: tuple[int, ...]
    runs: int  # cells that contributed (a generator-free method is read from every generator's cell)
    within: float | None = None  # the mean over splits of the std within a split (student seeds, group students)
    collapsed: int | None = None  # collapsed models over the contributing cells (student seeds, group students)

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


def _read(metrics: dict[str, float], keys: tuple[str, ...]) -> float | None:
    for key in keys:
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
                spread: list[float] = []
                collapsed: list[float] = []
                for c in cells:
                    if c.dataset != ds or (gen is not None and c.generator != gen):
                        continue
                    v = _read(c.metrics, method.metrics)
                    if v is not None:
                        per_split.setdefault(c.split, []).append(v)
                        if (w := _read(c.metrics, method.spread)) is not None:
                            spread.append(w)
                        if method.collapsed and method.collapsed in c.metrics:
                            collapsed.append(c.metrics[method.collapsed])
                if not per_split:
                    continue
                splits = tuple(sorted(per_split))
                rows.append(TableRow(ds, method.key, method.label, gen,
                                     tuple(sum(per_split[s]) / len(per_split[s]) for s in splits), splits,
                                     sum(len(v) for v in per_split.values()),
                                     sum(spread) / len(spread) if spread else None,
                                     int(sum(collapsed)) if collapsed else None))
    return rows


def fold_hash_mismatches(cells: list[CellResult]) -> list[str]:
    """protocol.md §8.1: every method of a table reads the same folds. One line per dataset and split whose cells
    logged more than one fold hash (naming the cells' generators), else none."""
    hashes: dict[tuple[str, int], dict[str, list[str]]] = {}
    for c in cells:
        if c.fold_hash:
            hashes.setdefault((c.dataset, c.split), {}).setdefault(c.fold_hash, []).append(c.generator)
    return [f"{ds} split {split}: " + "; ".join(f"{h[:12]} ({', '.join(g)})" for h, g in by.items())
            for (ds, split), by in hashes.items() if len(by) > 1]


def _entry(r: TableRow) -> str:
    within = f"; within {100 * r.within:.2f}" if r.within is not None else ""
    collapsed = f"; {r.collapsed} collapsed" if r.collapsed is not None else ""
    return f"{100 * r.mean:.2f} ± {100 * r.std:.2f} ({r.n}{within}{collapsed})"


def markdown_table(rows: list[TableRow], generators: list[str] | None = None, datasets: list[str] | None = None) -> str:
    """Methods as rows, datasets as columns; each entry `mean ± std (n; within w; k collapsed)` in percent. Every
    method of the grid's `generators` and every one of its `datasets` (default: those in `rows`) has its row and
    column: an entry that no finished cell has reads "— (why)"."""
    if not rows:
        return "(no finished cell yet)\n"
    datasets = datasets or list(dict.fromkeys(r.dataset for r in rows))
    gens = generators or list(dict.fromkeys(r.generator for r in rows if r.generator))
    by = {(r.method, r.generator, r.dataset): r for r in rows}
    finished = {(r.generator, r.dataset) for r in rows} | {(None, r.dataset) for r in rows}
    out = ["| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for method in METHODS:
        for gen in gens if method.per_generator else [None]:
            name = f"{method.label} ({gen})" if gen else method.label
            absent = f"— ({method.absent or 'no finished cell has it'})"
            why = lambda ds: absent if (gen, ds) in finished else "— (no finished cell)"  # noqa: E731
            entries = [_entry(r) if (r := by.get((method.key, gen, ds))) else why(ds) for ds in datasets]
            out.append(f"| {name} | " + " | ".join(entries) + " |")
    return "\n".join(out) + "\n"


def table_metrics(rows: list[TableRow]) -> dict[str, float]:
    """Flat MLflow metrics: `benchmark/<dataset>/<method>[-<generator>]/test/acc_mean|acc_std|n`."""
    out: dict[str, float] = {}
    for r in rows:
        base = f"benchmark/{r.dataset}/{r.method}" + (f"-{r.generator}" if r.generator else "")
        out |= {f"{base}/test/acc_mean": r.mean, f"{base}/test/acc_std": r.std, f"{base}/test/n": float(r.n)}
        if r.within is not None:
            out[f"{base}/test/acc_within_std"] = r.within
    return out


def report_markdown(name: str, command: str | None, word: str, finished: int, cells: int, failed: list[str],
                    folder: str, real_group: bool, rows: list[TableRow], facts: dict[str, str] | None = None,
                    generators: list[str] | None = None, recipe: str | None = None,
                    mismatches: list[str] | None = None, datasets: list[str] | None = None) -> str:
    """The benchmark's results page: its command and facts (protocol.md §7), how many cells finished (and which
    failed), the table, and whether its methods shared their folds (§8.1)."""
    recipe_note = (f"Data-free and group rows: every generator's students are trained with `distill.recipe={recipe}`"
                   + ("; protocol.md §6 defines the RandG, DeepInvG and GFKD rows with the plain KD recipe "
                      "(`distill.recipe=plain`)" if recipe != "plain" else "") + ".\n\n") if recipe else ""
    folds = (("**The fold hashes differ** between cells of one split, so the methods did not read the same folds "
              "(protocol.md §8.1): " + "; ".join(mismatches) + ".\n\n") if mismatches else
             "Every cell of a dataset and split logged the same fold hash (protocol.md §8.1).\n\n"
             if mismatches is not None else "")
    return (f"# Benchmark `{name}`: test accuracy (%)\n\n"
            + (f"Command: `{command}`\n\n" if command else "")
            + "".join(f"- {k}: {v}\n" for k, v in (facts or {}).items()) + ("\n" if facts else "")
            + f"Mean ± population std over {word} (n per entry; within: the mean over {word} of the std over student "
              f"seeds or group students; collapsed: models that put ≥ 95 % of the test graphs in one class, over the "
              f"{word}); {finished} of {cells} cells finished"
            + (f"; failed: {', '.join(failed)} (rerun the same command to resume them)" if failed else "")
            + f". Each cell is one pipeline run in `{folder}/<cell>`.\n\n" + recipe_note
            + ("The group rows ran on the real training graphs (`group.graph.data=real`): with-data reference rows at "
               "the val-selected epoch, not data-free, whatever their generator column says.\n\n"
               if real_group else "") + markdown_table(rows, generators, datasets)
            + ("\n" + folds.rstrip() + "\n" if folds else ""))
