"""Why the data-free students lean to one class on real graphs: the diagnostics of docs/distill.md ("The class lean
on IMDB-BINARY") → a Markdown file.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lean_diagnostics.py --runs /tmp/runs/imdb-soft \
        --dataset IMDB-BINARY --folds 0-1 --data-root ../shared/datasets

Reads the cells of `benchmarks/distill.py` (`<runs>/<dataset>-fold<k>/teacher`, `acgkd/` and, where there, `randg/`,
`gfkd/` and the `--students` folder: banks and students) and the real dataset; trains nothing. `--students` (default
acgkd) names the folder whose students are diagnosed. Four tables:

1. structure by class: node count, density, mean degree and the share of graphs with a node joined to every other
   node, for the real training graphs by their label and by the teacher's, and for each bank by the teacher's label;
   then, per fold, the share of each bank in the teacher's largest class;
2. the students' agreement with the teacher by graph density, on every graph of the dataset (no data-free
   student saw any of them), for each of the teacher's classes;
3. BN statistics: the students' test accuracy, agreement with the teacher and share called class 0 with their stored
   running statistics, recomputed on their own bank, and recomputed on the real training graphs (the last reads real
   graphs: a diagnosis, not a setting);
4. (two classes) an oracle margin shift: per student, the constant added to z_1 − z_0 that best matches the teacher's
   labels on the test graphs, and the accuracy at that shift (it reads the test graphs: what a bias correction
   aimed at the teacher would buy, not a setting).
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import copy
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.loader import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.accuracy_by_size import add_cell_arguments  # noqa: E402
from benchmarks.distill import _folds, row_name  # noqa: E402
from benchmarks.first_bn_layer import teacher_split  # noqa: E402
from gfkd.io.atomic import write_atomic  # noqa: E402
from gfkd.io.checkpoint import load_checkpoint  # noqa: E402
from gfkd.models.widened import build_student  # noqa: E402
from gfkd.stages.distill import load_pseudo_graphs  # noqa: E402
from gfkd.stages.teacher import load_teacher  # noqa: E402
from gfkd.train import logits_of  # noqa: E402

CPU = torch.device("cpu")
DENSITY_EDGES = [0.3, 0.4, 0.5, 0.6, 0.8]


def structure(graphs: list, labels: np.ndarray) -> dict[int, tuple[int, float, float, float, float]]:
    """Per class c: (graphs, mean node count, mean density, mean degree, share of graphs with a node of degree n − 1)."""
    n = np.array([g.num_nodes for g in graphs])
    m = np.array([g.edge_index.size(1) for g in graphs])  # both directions of every edge
    hub = np.array([int(torch.bincount(g.edge_index[0], minlength=g.num_nodes).max()) == g.num_nodes - 1
                    if g.edge_index.numel() else False for g in graphs])
    density, degree = m / np.maximum(n * (n - 1), 1), m / n
    return {int(c): (int((labels == c).sum()), float(n[labels == c].mean()), float(density[labels == c].mean()),
                     float(degree[labels == c].mean()), float(hub[labels == c].mean())) for c in np.unique(labels)}


def top_class_by_fold(cells: list[dict], folds: list[int]) -> list[str]:
    """Markdown rows: per bank and fold, the share of its pseudo-graphs in the teacher's largest class (that class in
    brackets), read off each cell's structure rows; then how many folds have every pseudo-graph in one class."""
    banks = [k for k in dict.fromkeys(k for c in cells for k in c["structure"]) if k.endswith(" bank, by the teacher")]
    out = ["| bank | " + " | ".join(f"fold {f}" for f in folds) + " | folds all in one class |",
           "|---|" + "---|" * (len(folds) + 1)]
    for bank in banks:
        row, whole = [], 0
        for c in cells:
            counts = {k: v[0] for k, v in c["structure"].get(bank, {}).items()}
            if not counts:
                row.append("—")
                continue
            top, total = max(counts, key=counts.get), sum(counts.values())
            row.append(f"{counts[top] / total:.3f} ({top})")
            whole += counts[top] == total
        out.append(f"| {bank.removesuffix(', by the teacher')} | " + " | ".join(row) + f" | {whole} |")
    return out


def with_bn_stats_of(model: nn.Module, graphs: list) -> nn.Module:
    """A copy of `model` whose BatchNorm running statistics are those of `graphs`, all in one batch (so every node
    weighs the same; a cumulative average over batches would weigh a short last batch like a full one)."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm1d):
            mod.reset_running_stats()
            mod.momentum = 1.0  # the running statistics become the one batch's
    m.train()
    b = next(iter(DataLoader(graphs, batch_size=len(graphs))))
    with torch.no_grad():
        m(b.x, b.edge_index, b.batch, b.num_graphs)
    return m.eval()


def best_shift(margin: torch.Tensor, teacher_pred: torch.Tensor) -> float:
    """The shift s in [−5, 5] (steps of 0.05) for which (margin + s > 0) agrees most with the teacher; ties: smallest |s|."""
    shifts = sorted(np.round(np.linspace(-5, 5, 201), 2), key=abs)
    return float(max(shifts, key=lambda s: ((margin + s > 0).long() == teacher_pred).float().mean().item()))


def cell(root: Path, data_root: Path, cache: Path, students: str = "acgkd") -> dict:
    """One fold: the structure rows, the agreement-by-density counts and the per-student BN / shift figures of the
    students (and their own bank) in `<root>/<students>`."""
    teacher, meta, _ = load_teacher(root / "teacher" / "teacher.pt")
    ds, split = teacher_split(meta, data_root, cache)
    train, test, every = (ds.subset(idx) for idx in (split.train, split.test, np.arange(len(ds))))
    loaders = {k: DataLoader(v, batch_size=256) for k, v in (("train", train), ("test", test), ("all", every))}
    y_train = np.array([int(g.y) for g in train])
    out = {"structure": {"real training graphs, by label": structure(train, y_train),
                         "real training graphs, by the teacher": structure(
                             train, logits_of(teacher, loaders["train"], CPU)[0].argmax(-1).numpy())},
           "density": [], "students": []}
    banks = {}
    for gen in dict.fromkeys(("acgkd", "randg", "gfkd", students)):
        shards = root / gen / "generate" / "shards"
        if shards.is_dir():
            graphs = load_pseudo_graphs(shards)
            lab = torch.cat([g.teacher_logits.view(1, -1) for g in graphs]).argmax(-1).numpy()
            out["structure"][f"{row_name(gen)} bank, by the teacher"] = structure(graphs, lab)
            banks[gen] = graphs
    z_all = logits_of(teacher, loaders["all"], CPU)[0].argmax(-1)
    n = np.array([g.num_nodes for g in every])
    dens = np.array([g.edge_index.size(1) for g in every]) / np.maximum(n * (n - 1), 1)
    z_test, y_test = logits_of(teacher, loaders["test"], CPU)
    t_test = z_test.argmax(-1)
    out["teacher"] = ((t_test == y_test).float().mean().item(), (t_test == 0).float().mean().item())
    ckpts = sorted((root / students / "distill" / "students").glob("pseudo-s*.pt"))
    if not ckpts:
        raise SystemExit(f"{root / students}: no data-free students there (distill/students/pseudo-s*.pt); "
                         f"--students names a generator or ablation folder of the cell")
    own = banks.get(students, banks["acgkd"])  # a distill-only ablation trained on the default banks
    for ckpt in ckpts:
        state, cmeta, _ = load_checkpoint(ckpt)
        student = build_student(cmeta["spec"], teacher)
        student.load_state_dict(state)
        s_all = logits_of(student, loaders["all"], CPU)[0].argmax(-1)
        out["density"].append((z_all.numpy(), s_all.numpy(), dens))
        rec = {}
        for name, model in (("stored", student), ("own bank", with_bn_stats_of(student, own)),
                            ("real training graphs", with_bn_stats_of(student, train))):
            z = logits_of(model, loaders["test"], CPU)[0]
            p = z.argmax(-1)
            rec[name] = ((p == y_test).float().mean().item(), (p == t_test).float().mean().item(),
                         (p == 0).float().mean().item())
            if name == "stored" and z.size(1) == 2:
                margin = z[:, 1] - z[:, 0]
                s = best_shift(margin, t_test)
                q = (margin + s > 0).long()
                rec["shift"] = (s, (q == y_test).float().mean().item(), (q == t_test).float().mean().item())
        out["students"].append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(ap)
    ap.add_argument("--students", default="acgkd", help="the folder of each cell whose students (and own bank) are "
                    "diagnosed: acgkd, gfkd, randg or a generator ablation's, e.g. acgkd-held-density")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "lean-diagnostics.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = args.runs / "_cache" / "datasets"
    cells = [cell(args.runs / f"{args.dataset.lower()}-fold{f}", args.data_root, cache, args.students)
             for f in _folds(args.folds)]
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lean_diagnostics.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    students = [r for c in cells for r in c["students"]]
    out = [f"# Why the data-free students lean ({args.dataset}, folds {args.folds})", "",
           f"Command: `{cmd}`; {platform.machine()} CPU, one torch thread. {len(students)} {row_name(args.students)} "
           "students (folds × "
           "seeds). Nothing is trained: every figure is read off the stored cells and the real dataset.", "",
           "## 1. Structure by class", "",
           "Pooled over the folds (a graph in the training split of several folds counts once per fold): graphs, mean "
           "node count, density, mean degree, and the share of graphs with a node joined to every other node (degree "
           "n − 1).", "",
           "| set | class | graphs | nodes | density | mean degree | with a node of degree n − 1 |",
           "|---|---|---|---|---|---|---|"]
    for label in dict.fromkeys(label for c in cells for label in c["structure"]):  # every set, in first-seen order
        per = [c["structure"][label] for c in cells if label in c["structure"]]
        for k in sorted({k for p in per for k in p}):
            rows = [p[k] for p in per if k in p]
            cnt = sum(r[0] for r in rows)
            avg = [sum(r[0] * r[i] for r in rows) / cnt for i in (1, 2, 3, 4)]
            out.append(f"| {label} | {k} | {cnt} | {avg[0]:.1f} | {avg[1]:.3f} | {avg[2]:.2f} | {avg[3]:.3f} |")
    out += ["", "Per fold, the share of each bank's pseudo-graphs that the teacher puts in its largest class (that class "
            "in brackets): a bank the teacher puts wholly in one class can teach a student only that class.", "",
            *top_class_by_fold(cells, _folds(args.folds))]
    t = np.concatenate([d[0] for c in cells for d in c["density"]])
    s = np.concatenate([d[1] for c in cells for d in c["density"]])
    dens = np.concatenate([d[2] for c in cells for d in c["density"]])
    which = np.digitize(dens, DENSITY_EDGES)
    bounds = [0.0, *DENSITY_EDGES, 1.0]
    classes = sorted(np.unique(t))
    out += ["", "## 2. Agreement with the teacher by density", "",
            "Every graph of the dataset, scored by every student (graph × student pairs in brackets): of the graphs the "
            "teacher puts in class c, the share the student puts there too.", "",
            "| density | " + " | ".join(f"teacher's class {c}" for c in classes) + " |", "|---|" + "---|" * len(classes)]
    for b in range(len(bounds) - 1):
        cells_b = []
        for c in classes:
            k = (which == b) & (t == c)
            cells_b.append(f"{(s[k] == c).mean():.3f} ({k.sum()})" if k.any() else "—")
        out.append(f"| [{bounds[b]:.1f}, {bounds[b + 1]:.1f}{']' if b == len(bounds) - 2 else ')'} | "
                   + " | ".join(cells_b) + " |")
    out += ["", "## 3. BN running statistics", "",
            "The students on the test graphs with their BatchNorm statistics as stored (accumulated on the pseudo-graphs "
            "in training), recomputed on their own bank, and recomputed on the real training graphs (not data-free: a "
            "diagnosis); recomputed means the statistics of all those graphs in one batch. Mean over the students.", "",
            "| BN statistics | test accuracy | agreement with the teacher | share called class 0 |", "|---|---|---|---|"]
    for name in ("stored", "own bank", "real training graphs"):
        a = np.array([r[name] for r in students])
        out.append(f"| {name} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {a[:, 2].mean():.3f} |")
    teach = np.array([c["teacher"] for c in cells])  # each fold once: the same test graphs as the students'
    out.append(f"| the teacher, for reference (mean over folds) | {teach[:, 0].mean():.3f} | — | "
               f"{teach[:, 1].mean():.3f} |")
    if all("shift" in r for r in students):
        a = np.array([r["shift"] for r in students])
        st = np.array([r["stored"] for r in students])
        out += ["", "## 4. Oracle margin shift", "",
                "Per student, the constant s added to z_1 − z_0 that best matches the teacher on the test graphs (chosen "
                "on them, for agreement with the teacher, not for accuracy: a diagnosis, not a setting), and the "
                "accuracy at that shift.", "",
                "| student | s | test accuracy: stored → shifted | agreement: stored → shifted |", "|---|---|---|---|"]
        out += [f"| {i} | {r[0]:+.2f} | {b[0]:.3f} → {r[1]:.3f} | {b[1]:.3f} → {r[2]:.3f} |"
                for i, (r, b) in enumerate(zip(a, st))]
        out.append(f"| mean | {a[:, 0].mean():+.2f} | {st[:, 0].mean():.3f} → {a[:, 1].mean():.3f} | "
                   f"{st[:, 1].mean():.3f} → {a[:, 2].mean():.3f} |")
    write_atomic(args.out, lambda tmp: tmp.write_text("\n".join(out) + "\n"))
    print(args.out)


if __name__ == "__main__":
    main()
