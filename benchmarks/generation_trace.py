"""One ACGKD chunk's generation loss, term by term, and the finalised graphs, under override sets → a Markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_trace.py --teacher runs/<run>/teacher/teacher.pt \
        --graphs 64 --set '' --set generate.acgkd.beta_deg=10

A diagnostic for the generate stage: `--graphs` graphs of bank 0's first chunk of the teacher's data metadata (its
first ones, which are its smallest since a chunk is sorted by size, or with `--pick spread` graphs evenly spaced
through it, so they span its sizes as the chunk does), generated once per `--set` (space-separated key=value overrides; '' = the defaults); the loss terms
(CE, R_BN, degree prior) at the first and last step, and the finalised chunk's density, mean degree, isolated-node
share and teacher agreement against the real graphs' metadata, the density by node count, and per generation target
class the density and the share the teacher puts in that class. Reads the teacher checkpoint only. Writes the table
with the command (default docs/benchmarks/generation-trace.md).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gfkd.config import resolve_config  # noqa: E402
from gfkd.generators.acgkd import generate  # noqa: E402
from gfkd.generators.bank import make_generator, plan_bank  # noqa: E402
from gfkd.stages.generate import auto_num_graphs  # noqa: E402
from gfkd.generators.base import GenContext, teacher_verdict  # noqa: E402
from gfkd.io.atomic import write_atomic  # noqa: E402
from gfkd.stages.teacher import load_teacher  # noqa: E402


def trace(teacher_pt: Path, overrides: list[str], graphs: int, pick: str = "first") -> dict:
    """The first and last step's loss terms and the finalised chunk's structure for one override set.

    pick: `first` takes the first `graphs` graphs of bank 0's first chunk, which is sorted by size, so its smallest
    graphs; `spread` takes `graphs` graphs evenly spaced through the chunk, so they span its sizes as a chunk does."""
    teacher, meta, bn_eval = load_teacher(teacher_pt)
    dm = meta["data"]
    cfg = resolve_config(None, [f"data.dataset='{dm['dataset']}'", *overrides])
    gc = cfg.generate
    ctx = GenContext(teacher, dm, bn_eval, gc, torch.device("cpu"))
    plan = plan_bank(dm, auto_num_graphs(meta), cfg.split_seed, 0, gc.nodes, gc.targets, gc.max_nodes,
                     gc.batch_size, gc.node_range)
    chunk = plan.chunks[0]
    idx = chunk[:graphs] if pick == "first" else chunk[torch.linspace(0, len(chunk) - 1, min(graphs, len(chunk))).long()]
    steps: list[tuple[int, dict]] = []
    final = generate(ctx, plan.num_nodes[idx], plan.targets[idx], make_generator(cfg.split_seed, 0, 0, "generate"),
                     log=lambda s, m: steps.append((s, m)))
    n = final.num_nodes.float()
    deg = final.adj.sum(2).float()  # [B, N]; zero on padding
    isolated = ((deg == 0) & final.mask).sum() / n.sum()
    density = deg.sum(1) / (n * (n - 1))  # [B]
    logits, _ = teacher_verdict(ctx, final)
    first, last = steps[0][1], steps[-1][1]  # a term not in the loss (β = 0) is NaN
    return {"first": {k: first.get(f"generate/train/{k}", float("nan")) for k in ("ce", "bn", "deg")},
            "last": {k: last.get(f"generate/train/{k}", float("nan")) for k in ("ce", "bn", "deg")},
            "density": float(density.mean()), "graph_density": density.tolist(), "graph_nodes": n.long().tolist(),
            "degree": float(deg.sum() / n.sum()),
            "isolated": float(isolated), "agreement": float((logits.argmax(1) == final.targets).float().mean()),
            "class_graphs": [int((final.targets == c).sum()) for c in range(logits.size(1))],
            "class_density": [float(density[final.targets == c].mean()) for c in range(logits.size(1))],
            "class_agreement": [float((logits.argmax(1) == c)[final.targets == c].float().mean())
                                for c in range(logits.size(1))],
            "real_density": float(dm["edge_density_mean"]), "real_degree": float(dm["degree_mean"]),
            "dataset": dm["dataset"], "graphs": len(idx)}


def bucket_names(edges: list[int]) -> list[str]:
    """Labels of the buckets [.., e_0), [e_0, e_1), …, [e_last, ..)."""
    lo = [None, *edges]
    hi = [*edges, None]
    return [f"n < {h}" if a is None else (f"n ≥ {a}" if h is None else f"{a} ≤ n < {h}") for a, h in zip(lo, hi)]


def density_by_size(nodes, density, edges: list[int]) -> list[tuple[float, int]]:
    """Mean density and graph count per node-count bucket (bucket_names(edges)) of graphs with these node counts
    and densities ([G] each); NaN for an empty bucket."""
    n, d = np.asarray(nodes), np.asarray(density)
    which = np.digitize(n, edges)
    return [(float(d[which == b].mean()) if (which == b).any() else float("nan"), int((which == b).sum()))
            for b in range(len(edges) + 1)]


def class_cells(r: dict) -> str:
    """One trace row's per-target-class cells: `density / agreement`, or — for a class with no graph in the chunk."""
    return " | ".join(f"{d:.3f} / {a:.3f}" if g else "—"
                      for g, d, a in zip(r["class_graphs"], r["class_density"], r["class_agreement"]))


def density_cells(nodes, density, edges: list[int]) -> str:
    """density_by_size as Markdown table cells: `mean (count)`, or — for an empty bucket."""
    return " | ".join(f"{d:.3f} ({c})" if c else "—" for d, c in density_by_size(nodes, density, edges))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="a teacher.pt of the teacher stage")
    ap.add_argument("--graphs", type=int, default=64, help="graphs of bank 0's first chunk to generate")
    ap.add_argument("--set", action="append", default=None, help="override set, e.g. 'generate.acgkd.beta_deg=10'")
    ap.add_argument("--pick", choices=["first", "spread"], default="first",
                    help="first: the chunk's first (smallest) graphs; spread: evenly spaced through it")
    ap.add_argument("--edges", type=int, nargs="+", default=[15, 25, 40], help="node-count bucket bounds")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "generation-trace.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [(s or "defaults", trace(args.teacher, s.split(), args.graphs, args.pick)) for s in (args.set or [""])]
    r0 = rows[0][1]
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_trace.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    out = [f"# One ACGKD chunk, term by term ({r0['dataset']})", "",
           f"Command: `{cmd}`; {platform.machine()} CPU, one torch thread.", "",
           f"Bank 0's first chunk, {r0['graphs']} graphs ({'its first, so its smallest' if args.pick == 'first' else 'evenly spaced through it'}); the real graphs' metadata: density {r0['real_density']:.3f}, mean "
           f"degree {r0['real_degree']:.2f}. Loss terms are the logged values at the first and last step, without "
           "their β weights (R_BN with the first layer's term times generate.bn_first_weight, as it enters the loss); "
           "the structure is of the finalised graphs.", "",
           "| overrides | CE first / last | R_BN first / last | degree prior first / last | density | mean degree "
           "| isolated nodes | teacher agreement |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        f, l = r["first"], r["last"]
        out.append(f"| {name} | {f['ce']:.2f} / {l['ce']:.2f} | {f['bn']:.1f} / {l['bn']:.1f} | {f['deg']:.3f} / "
                   f"{l['deg']:.3f} | {r['density']:.3f} | {r['degree']:.2f} | {r['isolated']:.3f} | "
                   f"{r['agreement']:.3f} |")
    names = bucket_names(args.edges)
    out += ["", "Density of the finalised graphs by node count (graphs in brackets):", "",
            "| overrides | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, r in rows:
        out.append(f"| {name} | {density_cells(r['graph_nodes'], r['graph_density'], args.edges)} |")
    classes = range(len(r0["class_density"]))
    out += ["", "By generation target: the density of the finalised graphs of each target class, and the share of "
            "them the teacher puts in that class:", "",
            "| overrides | " + " | ".join(f"class {c}: density / agreement" for c in classes) + " |",
            "|---|" + "---|" * len(classes)]
    for name, r in rows:
        out.append(f"| {name} | {class_cells(r)} |")
    write_atomic(args.out, lambda tmp: tmp.write_text("\n".join(out) + "\n"))
    print(args.out)


if __name__ == "__main__":
    main()
