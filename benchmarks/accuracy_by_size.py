"""Test accuracy and agreement with the teacher by graph size, for the teacher and the distill benchmark's students
→ a Markdown table. Where does a data-free student lose to KD on real graphs?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/accuracy_by_size.py --runs /tmp/runs/imdb-new \
        --dataset IMDB-BINARY --folds 0-1 --data-root ../shared/datasets --edges 15 25 40

Reads the cells of `benchmarks/distill.py` (`<runs>/<dataset>-fold<k>/teacher`, `acgkd/distill`, `randg/distill`):
every stored student checkpoint of every seed is scored on its fold's real test graphs, grouped by node count into
the buckets that `--edges` bound. A bucket's accuracy pools its test graphs over folds and seeds. Agreement is the
share of test graphs where the model predicts the teacher's class. A second table gives the mean edge density per
bucket of the real training graphs and of the ACGKD and RandG banks the students trained on.
`--graphs all` scores every graph of the dataset instead: no data-free student saw any of them, so their agreement
with the teacher is measured on ten times the graphs of one test fold.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from torch_geometric.loader import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.distill import _folds  # noqa: E402
from benchmarks.first_bn_layer import teacher_split  # noqa: E402
from benchmarks.generation_trace import bucket_names, density_cells  # noqa: E402
from gfkd.io.atomic import write_atomic  # noqa: E402
from gfkd.io.checkpoint import load_checkpoint  # noqa: E402
from gfkd.io.shards import read_shard_set  # noqa: E402
from gfkd.models.widened import build_student  # noqa: E402
from gfkd.stages.distill import load_pseudo_graphs  # noqa: E402
from gfkd.stages.teacher import load_teacher  # noqa: E402
from gfkd.train import logits_of  # noqa: E402

MODELS = {"KD (real data)": ("acgkd", "kd_real"), "student (real data)": ("acgkd", "student_real"),
          "ACGKD": ("acgkd", "pseudo"), "RandG": ("randg", "pseudo")}


def cell_predictions(root: Path, data_root: Path, cache: Path, also: dict[str, Path] | None = None,
                     drop: tuple[str, ...] = (), graphs: str = "test") -> dict:
    """One cell: test labels, node counts, the teacher's predictions and each model's predictions (one per seed).

    also: more data-free rows, label → a generator folder of the same fold (its generate/shards and its
    distill/students/pseudo-s*.pt), e.g. a generator ablation's banks kept in another runs folder; drop: rows of
    MODELS to leave out (their banks too); graphs: "test" (the fold's test graphs) or "all" (every graph of the
    dataset: no data-free student saw any of them, so their agreement with the teacher is a 10× larger sample than the
    test fold's; the teacher and the real-data rows trained on some of them, so read agreement there, not accuracy)."""
    teacher, meta, _ = load_teacher(root / "teacher" / "teacher.pt")
    ds, split = teacher_split(meta, data_root, cache)
    test = ds.subset(split.test if graphs == "test" else np.arange(len(ds)))
    loader = DataLoader(test, batch_size=256)
    cpu = torch.device("cpu")
    z_t, y = logits_of(teacher, loader, cpu)
    out = {"y": y.numpy(), "n": np.array([g.num_nodes for g in test]), "teacher": [z_t.argmax(-1).numpy()],
           "teacher_p": z_t.softmax(-1).max(-1).values.numpy()}  # the teacher's top-class probability per graph
    train = ds.subset(split.train)
    n = np.array([g.num_nodes for g in train])
    out["density"] = {"real training graphs": (n, np.array([g.edge_index.size(1) for g in train]) / (n * (n - 1)))}
    folders = {f"{label} bank": root / gen for label, gen in (("ACGKD", "acgkd"), ("RandG", "randg")) if label not in drop}
    folders |= {f"{label} bank": path for label, path in (also or {}).items()}
    for label, folder in folders.items():
        shards = folder / "generate" / "shards"
        if shards.is_dir():
            nb, mb = [], []
            for t in read_shard_set(shards):  # src holds both directions of every edge
                nb += t.column("num_nodes").to_pylist()
                mb += [len(e) for e in t.column("src").to_pylist()]
            nb = np.array(nb)
            out["density"][label] = (nb, np.array(mb) / (nb * (nb - 1)))
    models = {name: (root / gen, variant) for name, (gen, variant) in MODELS.items() if name not in drop}
    models |= {label: (path, "pseudo") for label, path in (also or {}).items()}
    out["bank"] = {}  # data-free rows: (the teacher's class of each pseudo-graph of the bank, each student's)
    banks: dict[Path, tuple[DataLoader, np.ndarray]] = {}  # read once per cell: ablations share their cell's banks

    def bank_of(folder: Path) -> tuple[DataLoader, np.ndarray] | None:
        shards = folder / "generate" / "shards"
        if not shards.is_dir():  # a distill-only ablation (acgkd-<name>) trained on its cell's ACGKD banks
            shards = folder.parent / "acgkd" / "generate" / "shards"
        if shards not in banks and shards.is_dir():
            graphs = load_pseudo_graphs(shards)
            banks[shards] = (DataLoader(graphs, batch_size=256),
                             torch.cat([g.teacher_logits.view(1, -1) for g in graphs]).argmax(-1).numpy())
        return banks.get(shards)

    for name, (folder, variant) in models.items():
        preds, bank_preds = [], []
        for ckpt in sorted((folder / "distill" / "students").glob(f"{variant}-s*.pt")):
            state, cmeta, _ = load_checkpoint(ckpt)
            student = build_student(cmeta["spec"], teacher)
            student.load_state_dict(state)
            preds.append(logits_of(student, loader, cpu)[0].argmax(-1).numpy())
            if variant == "pseudo" and (bank := bank_of(folder)) is not None:
                bank_preds.append(logits_of(student, bank[0], cpu)[0].argmax(-1).numpy())
        if preds:
            out[name] = preds
        if bank_preds:
            out["bank"][name] = (bank[1], bank_preds)
    return out


def _models(cell: dict) -> list[str]:
    """The rows of a cell with predictions: the teacher first, then the models in the cell's order."""
    return ["teacher", *(k for k in cell if k not in ("y", "n", "teacher", "teacher_p", "density", "bank"))]


def table(cells: list[dict], edges: list[int]) -> tuple[list[str], dict[str, list[tuple[float, float]]], list[int]]:
    """Per model and bucket: (accuracy, agreement with the teacher), pooled over cells and seeds; graphs per bucket."""
    names = bucket_names(edges)
    counts = [0] * len(names)
    rows: dict[str, list[list[float]]] = {}
    for c in cells:
        b = np.digitize(c["n"], edges)  # bucket index per test graph
        for k in range(len(names)):
            counts[k] += int((b == k).sum())
        t = c["teacher"][0]
        for model in _models(c):
            for pred in c.get(model, []):
                acc = rows.setdefault(model, [[0, 0, 0] for _ in names])  # correct, agree, total
                for k in range(len(names)):
                    m = b == k
                    acc[k][0] += int((pred[m] == c["y"][m]).sum())
                    acc[k][1] += int((pred[m] == t[m]).sum())
                    acc[k][2] += int(m.sum())
    res = {model: [(a[0] / a[2], a[1] / a[2]) if a[2] else (float("nan"), float("nan")) for a in acc]
           for model, acc in rows.items()}
    return names, res, counts


def top_shares(cells: list[dict]) -> dict[str, list[float]]:
    """Per model: each prediction's share of its most predicted class on the test graphs (one per cell and seed, in
    cell order): how close the teacher and each student come to one class (collapse: ≥ 0.95)."""
    out: dict[str, list[float]] = {}
    for c in cells:
        for model in _models(c):
            for pred in c.get(model, []):
                out.setdefault(model, []).append(float(np.bincount(pred).max() / len(pred)))
    return out


def by_class(cells: list[dict]) -> tuple[list[float], dict[str, tuple[list[float], list[float]]]]:
    """Per class c, pooled over cells and seeds: the share of graphs labelled c, and per model the share it predicts
    as c and its recall on c (accuracy on the graphs labelled c). Which way does a model's error lean?"""
    C = int(max(max(c["y"].max(), *(p.max() for m in _models(c) for p in c.get(m, []))) for c in cells)) + 1
    y = np.concatenate([c["y"] for c in cells])
    true_share = [float((y == k).mean()) for k in range(C)]
    out: dict[str, tuple[list[float], list[float]]] = {}
    for model in dict.fromkeys(m for c in cells for m in _models(c)):
        pairs = [(c["y"], p) for c in cells for p in c.get(model, [])]
        if not pairs:
            continue
        ys, ps = np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])
        out[model] = ([float((ps == k).mean()) for k in range(C)],
                      [float((ps[ys == k] == k).mean()) if (ys == k).any() else float("nan") for k in range(C)])
    return true_share, out


def teacher_confidence_split(cells: list[dict]) -> dict[str, list[tuple[float, float, int, int]]]:
    """Per data-free model and teacher class c, pooled over cells and seeds: the teacher's mean top-class probability
    on the real graphs of class c that the student follows, and on those it misses, with their counts. Does the
    student miss the graphs the teacher is unsure of, or confident ones?"""
    out: dict[str, list[tuple[float, float, int, int]]] = {}
    for model in dict.fromkeys(m for c in cells for m in c.get("bank", {})):
        t, p, s = [], [], []
        for c in cells:
            for pred in c.get(model, []):
                t.append(c["teacher"][0])
                p.append(c["teacher_p"])
                s.append(pred)
        if not t:
            continue
        t, p, s = map(np.concatenate, (t, p, s))
        rows = []
        for k in range(int(t.max()) + 1):
            follow, miss = (t == k) & (s == k), (t == k) & (s != k)
            rows.append((float(p[follow].mean()) if follow.any() else float("nan"),
                         float(p[miss].mean()) if miss.any() else float("nan"), int(follow.sum()), int(miss.sum())))
        out[model] = rows
    return out


def teacher_class_agreement(cells: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per data-free model and teacher class c, pooled over cells and seeds: (the share of its bank's pseudo-graphs of
    teacher class c that the student also puts in c, the same share on the real graphs scored). Is a class the
    student misses on real graphs one it already missed on its own bank, or one the bank does not carry over?"""
    out: dict[str, list[tuple[float, float]]] = {}
    for model in dict.fromkeys(m for c in cells for m in c.get("bank", {})):
        tb, sb, tr, sr = [], [], [], []
        for c in cells:
            if model not in c.get("bank", {}):
                continue
            t_bank, bank_preds = c["bank"][model]
            tb += [t_bank] * len(bank_preds)
            sb += bank_preds
            tr += [c["teacher"][0]] * len(c[model])
            sr += c[model]
        tb, sb, tr, sr = map(np.concatenate, (tb, sb, tr, sr))
        C = int(max(tb.max(), tr.max())) + 1
        out[model] = [(float((sb[tb == k] == k).mean()) if (tb == k).any() else float("nan"),
                       float((sr[tr == k] == k).mean()) if (tr == k).any() else float("nan")) for k in range(C)]
    return out


def add_cell_arguments(ap: argparse.ArgumentParser) -> None:
    """The arguments that name stored cells of benchmarks/distill.py: --runs, --dataset, --folds, --data-root."""
    ap.add_argument("--runs", type=Path, required=True, help="a --runs folder of benchmarks/distill.py")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--folds", default="0", help="e.g. 0-4 or 0,3")
    ap.add_argument("--data-root", type=Path, required=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(ap)
    ap.add_argument("--cache", type=Path, default=None, help="dataset cache (default <runs>/_cache/datasets)")
    ap.add_argument("--edges", type=int, nargs="+", default=[15, 25, 40], help="node-count bucket bounds")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=FOLDER",
                    help="another data-free row: a generator folder of each fold, {fold} in FOLDER replaced")
    ap.add_argument("--drop", nargs="*", default=[], choices=list(MODELS), help="rows of the runs folder to leave out")
    ap.add_argument("--graphs", choices=["test", "all"], default="test",
                    help="score the folds' test graphs, or every graph of the dataset (agreement of data-free rows)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "accuracy-by-size.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folds = _folds(args.folds)
    cache = args.cache or args.runs / "_cache" / "datasets"
    also = dict(a.split("=", 1) for a in args.also)
    cells = [cell_predictions(args.runs / f"{args.dataset.lower()}-fold{f}", args.data_root, cache,
                              {label: Path(path.format(fold=f)) for label, path in also.items()}, tuple(args.drop),
                              args.graphs)
             for f in folds]
    names, res, counts = table(cells, args.edges)
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/accuracy_by_size.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    seeds = {m: sum(len(c.get(m, [])) for c in cells) for m in [*(m for m in MODELS if m not in args.drop), *also]}
    out = [f"# Accuracy by graph size ({args.dataset}, folds {args.folds})", "",
           f"Command: `{cmd}`; {platform.machine()} CPU, one torch thread. Students per row (folds × seeds): "
           + ", ".join(f"{m} {k}" for m, k in seeds.items()) + (
               ". Each cell: test accuracy / agreement with the teacher, pooled over the folds' test graphs and the "
               "students' seeds." if args.graphs == "test" else
               ". Each cell: accuracy / agreement with the teacher on every graph of the dataset (--graphs all), "
               "pooled over the folds and the students' seeds; no data-free student saw any of these graphs, the "
               "teacher and the real-data rows trained on most of them, so the agreement of the data-free rows is "
               "the figure to read."), "",
           "| model | " + " | ".join(f"{nm} ({k} graphs)" for nm, k in zip(names, counts)) + " | all |",
           "|---|" + "---|" * (len(names) + 1)]
    total = sum(counts)
    for model, vals in res.items():
        all_acc = sum(a * k for (a, _), k in zip(vals, counts) if k) / total
        all_agr = sum(g * k for (_, g), k in zip(vals, counts) if k) / total
        out.append(f"| {model} | " + " | ".join(f"{a:.3f} / {g:.3f}" for a, g in vals)
                   + f" | {all_acc:.3f} / {all_agr:.3f} |")
    out += ["", f"Share of the most predicted class on the {'test ' if args.graphs == 'test' else ''}graphs, per fold "
            "and seed (collapsed: ≥ 0.95):", ""]
    out += [f"- {model}: " + ", ".join(f"{v:.3f}" for v in vals) for model, vals in top_shares(cells).items()]
    true_share, classes = by_class(cells)
    C = len(true_share)
    out += ["", "By class, pooled over the folds and seeds: the share of graphs each model puts in class c, and its "
            "recall on class c (the true shares in the first row):", "",
            "| model | " + " | ".join(f"predicted as {k}" for k in range(C)) + " | "
            + " | ".join(f"recall of {k}" for k in range(C)) + " |", "|---|" + "---|" * (2 * C),
            "| (true labels) | " + " | ".join(f"{v:.3f}" for v in true_share) + " |" + " — |" * C]
    out += [f"| {model} | " + " | ".join(f"{v:.3f}" for v in shares) + " | " + " | ".join(f"{v:.3f}" for v in rec)
            + " |" for model, (shares, rec) in classes.items()]
    agree = teacher_class_agreement(cells)
    if agree:
        C = max(len(v) for v in agree.values())
        where = "test graphs" if args.graphs == "test" else "graphs of the dataset"
        out += ["", "Agreement with the teacher by the teacher's class, pooled over the folds and seeds: of the graphs "
                f"the teacher puts in class c, the share the student puts there too, on its own bank (the "
                f"pseudo-graphs it trained on) and on the real {where}:", "",
                "| model | " + " | ".join(f"class {k}: bank | class {k}: real" for k in range(C)) + " |",
                "|---|" + "---|" * (2 * C)]
        out += [f"| {model} | " + " | ".join(f"{b:.3f} | {r:.3f}" for b, r in vals) + " |"
                for model, vals in agree.items()]
        conf = teacher_confidence_split(cells)
        out += ["", f"The teacher's mean top-class probability on the real {where} of its class c that the student "
                "follows and that it misses (how many, pooled over the folds and seeds, in brackets):", "",
                "| model | " + " | ".join(f"class {k}: followed | class {k}: missed" for k in range(C)) + " |",
                "|---|" + "---|" * (2 * C)]
        out += [f"| {model} | " + " | ".join(f"{f:.3f} ({nf}) | {m:.3f} ({nm})" for f, m, nf, nm in vals) + " |"
                for model, vals in conf.items()]
    out += ["", "Mean edge density per bucket (graphs in brackets, pooled over folds):", "",
            "| graphs | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label in cells[0]["density"]:
        n = np.concatenate([c["density"][label][0] for c in cells if label in c["density"]])
        d = np.concatenate([c["density"][label][1] for c in cells if label in c["density"]])
        out.append(f"| {label} | {density_cells(n, d, args.edges)} |")
    write_atomic(args.out, lambda tmp: tmp.write_text("\n".join(out) + "\n"))
    print(args.out)


if __name__ == "__main__":
    main()
