"""How well a featureless GIN teacher's first layer gives back the degree histogram it was trained on.

    python benchmarks/degree_histogram.py --teachers /tmp/runs/imdb2/imdb-binary-fold2/teacher/teacher.pt \
        --data-root /work/shared/datasets --out docs/benchmarks/degree-histogram.md

For each teacher checkpoint: the histogram that generate.acgkd.init_degrees=teacher starts from (NNLS on the first
Linear and its BN's stored mean, gfkd/generators/degree_histogram.py), the binomial histogram of the uniform start
(each training size n_g at density clamp(d̄/(n_g − 1)), from the metadata), and the real node degree histogram of the
teacher's training split, which only this diagnostic opens. Writes the table with the command.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
from torch_geometric.utils import degree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.first_bn_layer import teacher_split  # noqa: E402
from gfkd.generators.bn_stats import bn_targets  # noqa: E402
from gfkd.generators.degree_histogram import teacher_histogram  # noqa: E402
from gfkd.io.atomic import write_atomic  # noqa: E402
from gfkd.stages.teacher import load_teacher  # noqa: E402


def uniform_start(meta: dict) -> np.ndarray:
    """Expected degree histogram of the uniform start over the metadata's node-count histogram: [D + 1]."""
    from scipy.stats import binom

    D, d_bar = int(meta["max_degree"]), float(meta["degree_mean"])
    hist = np.zeros(D + 1)
    for n, count in meta["node_count_hist"].items():
        n = int(n)
        rho = min(max(d_bar / max(n - 1, 1), 1e-3), 0.95)
        pmf = binom.pmf(np.arange(n), n - 1, rho)
        np.add.at(hist, np.minimum(np.arange(n), D), pmf * n * count)
    return hist / hist.sum()


def row(path: Path, data_root: str, runs: Path) -> dict:
    teacher, meta, eval_stats = load_teacher(path)
    data, split_meta = meta["data"], meta["split"]
    ds, split = teacher_split(meta, data_root, runs / "_cache" / "datasets")
    D = int(data["max_degree"])
    degs = np.concatenate([degree(ds.dataset[int(i)].edge_index[0], ds.dataset[int(i)].num_nodes).numpy()
                           for i in split.train]).astype(int)
    real = np.bincount(np.minimum(degs, D), minlength=D + 1) / len(degs)
    got = teacher_histogram(teacher, bn_targets(teacher, "auto", eval_stats), float(data["degree_mean"])).numpy()
    uni = uniform_start(data)
    k = np.arange(D + 1)
    tv = lambda p: 0.5 * float(np.abs(p - real).sum())  # noqa: E731
    return {"teacher": str(path), "dataset": data["dataset"], "fold": split_meta["fold"], "D": D,
            "tv_teacher": tv(got), "tv_uniform": tv(uni), "mean": (float(k @ got), float(k @ uni), float(k @ real)),
            "p90": tuple(int(np.searchsorted(np.cumsum(p), 0.9)) for p in (got, uni, real)),
            "max": tuple(int(k[p > 1e-3].max()) for p in (got, uni, real))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teachers", type=Path, nargs="+", required=True, help="teacher.pt files of featureless sets")
    ap.add_argument("--data-root", required=True, help="where <Name>/raw/ of the real datasets lie")
    ap.add_argument("--runs", type=Path, default=Path("/tmp/degree-histogram-runs"), help="PyG cache folder")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "degree-histogram.md")
    args = ap.parse_args()
    rows = [row(p, args.data_root, args.runs) for p in args.teachers]
    cmd = "python benchmarks/degree_histogram.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    out = ["# The degree histogram a featureless teacher gives back", "", f"Command: `{cmd}`", "",
           "Total variation against the real node degree histogram of the teacher's training split (0 = equal, "
           "1 = disjoint); mean, 90th percentile and largest degree (bins above 0.1 %) as teacher-read / uniform "
           "start / real.", "",
           "| dataset | fold | D | TV teacher-read | TV uniform start | mean degree | 90th pct | largest |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['dataset']} | {r['fold']} | {r['D']} | {r['tv_teacher']:.3f} | {r['tv_uniform']:.3f} | "
                   + " | ".join(" / ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r[key])
                                for key in ("mean", "p90", "max")) + " |")
    write_atomic(args.out, lambda tmp: Path(tmp).write_text("\n".join(out) + "\n"))
    print("\n".join(out))


if __name__ == "__main__":
    main()
