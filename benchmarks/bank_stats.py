"""Pseudo-graph banks against the real graphs they stand in for, next to the data-free student they trained.

    python benchmarks/bank_stats.py --runs /tmp/distill-runs:'bn_first_weight 1' /tmp/distill-runs2:'bn_first_weight 10' \
        --dataset MUTAG --folds 0-9

For each runs folder of benchmarks/distill.py (cells `<runs>/<dataset>-fold<i>/{teacher,acgkd}`; `PATH:LABEL:CELL` reads
another cell than `acgkd`, such as a generate ablation's `acgkd-soft-targets`) and fold: the node-type
marginals of the ACGKD bank union and their total variation against the fold's real training graphs (featureful
sets), mean degree, the teacher's mean |logit| on pseudo and real graphs, the relative R_BN of the first BN layer
(the one that sees the node types) and of the last, both over the whole union against the teacher's stored
eval-mode statistics, and the data-free student's last-epoch test accuracy. This is a diagnostic: it opens the real
training split, which the data-free stages never do. Writes docs/benchmarks/bank-stats.md with the command.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from torch_geometric.loader import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.first_bn_layer import teacher_split  # noqa: E402
from gfkd.generators.bn_stats import bn_targets, relative_term  # noqa: E402
from gfkd.io.atomic import write_atomic  # noqa: E402
from gfkd.models.bn_stats import bn_input_statistics  # noqa: E402
from gfkd.stages.distill import load_pseudo_graphs  # noqa: E402
from gfkd.stages.teacher import load_teacher  # noqa: E402
from gfkd.train import logits_of  # noqa: E402

CPU = torch.device("cpu")


def relative_rbn(stats: dict, mu: torch.Tensor, var: torch.Tensor, name: str, eps: float = 1e-5) -> float:
    """acgkd.md §7's relative R_BN term of one layer, from `bn_input_statistics` output."""
    return float(relative_term(stats[f"{name}.mean"], stats[f"{name}.var"], mu, var, eps))


def fold_row(runs: Path, dataset: str, fold: int, data_root: str | None, cell: str = "acgkd") -> dict | None:
    """The diagnostics of one fold's banks in `cell`, or None when the cell is not finished."""
    root = runs / f"{dataset.lower()}-fold{fold}"
    shards, res = root / cell / "generate" / "shards", root / cell / "distill" / "results.json"
    if not (shards / "_manifest.json").is_file() or not res.is_file():
        return None
    teacher, meta, eval_stats = load_teacher(root / "teacher" / "teacher.pt")
    pseudo = load_pseudo_graphs(shards)
    ds, split = teacher_split(meta, data_root, runs / "_cache" / "datasets")
    real = list(ds.subset(split.train))
    targets = bn_targets(teacher, "auto", eval_stats)
    first, last = list(targets)[0], list(targets)[-1]
    row = {"fold": fold}
    for name, graphs in (("pseudo", pseudo), ("real", real)):
        loader = DataLoader(graphs, batch_size=1024)
        stats = bn_input_statistics(teacher, loader, CPU)
        row[f"{name}_types"] = torch.cat([g.x for g in graphs]).mean(0).numpy()
        row[f"{name}_degree"] = float(np.mean([g.edge_index.size(1) / g.num_nodes for g in graphs]))
        row[f"{name}_logit"] = float(logits_of(teacher, loader, CPU)[0].abs().mean())
        row[f"{name}_rbn_first"] = relative_rbn(stats, *targets[first], first)
        row[f"{name}_rbn_last"] = relative_rbn(stats, *targets[last], last)
        row[f"{name}_logvar_last"] = float(torch.log((stats[f"{last}.var"] + 1e-5) / (targets[last][1] + 1e-5)).mean())
    row["type_tv"] = 0.5 * float(np.abs(row["pseudo_types"] - row["real_types"]).sum())
    records = json.loads(res.read_text())["records"].values()
    row["student_acc"] = float(np.mean([r["test_acc"] for r in records if r["variant"] == "pseudo"]))
    row["featureless"] = meta["data"]["feature_kind"] == "degree"
    return row


def render(tables: dict[str, list[dict]], dataset: str, command: str) -> str:
    out = [f"# Pseudo-graph banks against real graphs ({dataset})", "",
           f"Command: `{command}`", "",
           "Per fold: the ACGKD bank union (6 banks) against the fold's real training graphs. TV: total variation "
           "between the node-type marginals (degree one-hot bins on featureless sets). R_BN first / last: the "
           "relative R_BN term (acgkd.md §7) of the teacher's first and last BN layer over the whole union (the real "
           "graphs score ≈ 0: they are what the targets were measured on); log σ̂²/σ²: the last layer's variance "
           "part, the mean over its channels of the log ratio of the batch variance to the target's (0 = matched, "
           "−3 = 20× too small). |z_T|: the teacher's mean absolute logit. Student: the data-free student's "
           "last-epoch test accuracy, mean over its seeds. A diagnostic that opens real training graphs; no stage "
           "does.", ""]
    for label, rows in tables.items():
        out += [f"## {label}", "", "| fold | TV types | type-0 share (C on MUTAG), pseudo / real | mean degree, pseudo / real "
                "| R_BN first | R_BN last | log σ̂²/σ² last, pseudo / real | \\|z_T\\| pseudo / real | student acc |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r['fold']} | {r['type_tv']:.2f} | {r['pseudo_types'][0]:.2f} / {r['real_types'][0]:.2f} | "
                       f"{r['pseudo_degree']:.2f} / {r['real_degree']:.2f} | {r['pseudo_rbn_first']:.2f} | "
                       f"{r['pseudo_rbn_last']:.1f} | {r['pseudo_logvar_last']:+.2f} / {r['real_logvar_last']:+.2f} | "
                       f"{r['pseudo_logit']:.1f} / {r['real_logit']:.1f} | "
                       f"{r['student_acc']:.3f} |")
        tv, acc = np.array([r["type_tv"] for r in rows]), np.array([r["student_acc"] for r in rows])
        corr = float(np.corrcoef(tv, acc)[0, 1]) if len(rows) > 2 and tv.std() > 0 and acc.std() > 0 else float("nan")
        rbn_last = np.array([r["pseudo_rbn_last"] for r in rows])
        out += ["", f"Mean: TV {tv.mean():.2f}, student {acc.mean():.3f} over {len(rows)} folds; Pearson correlation "
                f"of TV and student accuracy across folds {corr:+.2f}; |z_T| pseudo / real "
                f"{np.mean([r['pseudo_logit'] for r in rows]):.1f} / {np.mean([r['real_logit'] for r in rows]):.1f}; "
                f"R_BN last {rbn_last.mean():.1f} (median {np.median(rbn_last):.1f}).", ""]
    return "\n".join(out)


def parse_runs_spec(spec: str) -> tuple[Path, str, str]:
    """`PATH[:LABEL[:CELL]]` -> (runs folder, table label (default: the path), cell folder (default: acgkd))."""
    path, _, rest = spec.partition(":")
    label, _, cell = rest.partition(":")
    return Path(path), label or path, cell or "acgkd"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", required=True,
                    help="PATH:LABEL[:CELL] per runs folder of benchmarks/distill.py (CELL: default acgkd)")
    ap.add_argument("--dataset", default="MUTAG")
    ap.add_argument("--folds", default="0-9")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "bank-stats.md")
    args = ap.parse_args()
    lo, _, hi = args.folds.partition("-")
    folds = list(range(int(lo), int(hi or lo) + 1))
    tables = {}
    for spec in args.runs:
        path, label, cell = parse_runs_spec(spec)
        rows = [r for f in folds if (r := fold_row(path, args.dataset, f, args.data_root, cell)) is not None]
        tables[label] = rows
        print(f"{label}: {len(rows)} folds", file=sys.stderr)
    command = "python benchmarks/bank_stats.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = render(tables, args.dataset, command)
    write_atomic(args.out, lambda tmp: tmp.write_text(text))
    print(args.out)


if __name__ == "__main__":
    main()
