"""Does a teacher's checkpoint depend on denormal flushing? The teacher stage trained twice, without and with it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/denormal_teacher.py --dataset MUTAG --fold 1 \
        --data-root ../shared/datasets --out /tmp/denormal-teacher

A check for docs/pipeline.md ("Denormals"): before every stage set the switch itself, a teacher trained after another
cell's generate stage in the same benchmark worker trained with flushing; it now trains without. This runs the
teacher stage (one thread, the config's defaults otherwise) once per setting into `<out>/<dataset>-<fold>-<flush>`
and prints whether the two teacher.pt files are the same bytes. With `--cell`, each teacher then gets the cell's ACGKD
banks and data-free students (`generate.method=acgkd`, `distill.baselines=[]`, as `benchmarks/distill.py` runs a
cell), and it prints their bank density and test accuracies: how far a difference in the teacher's last bits carries.
Stages already in `--out` are reused.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse  # noqa: E402
import filecmp  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gfkd.config import resolve_config  # noqa: E402
from gfkd.layout import RunLayout  # noqa: E402
from gfkd.stages import common, distill, generate, teacher  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="a folder for the two teacher runs")
    ap.add_argument("--cell", action="store_true", help="also the ACGKD banks and students on each teacher")
    args = ap.parse_args()
    paths = {}
    for flush in (False, True):
        root = args.out / f"{args.dataset}-{args.fold}-{flush}"
        cfg = resolve_config(None, [f"data.dataset={args.dataset}", f"data.root='{args.data_root}'",
                                    f"protocol.fold={args.fold}", f"run.runs_dir='{root}'", "run.threads=1",
                                    "generate.method=acgkd", "distill.baselines=[]"])
        teacher.prepare_runtime = lambda run, flush_denormal=False, f=flush: common.prepare_runtime(run, f)
        t_out = teacher.run(cfg, RunLayout(root), "k")
        paths[flush] = root / "teacher" / "teacher.pt"
        if args.cell:
            print(f"flushing {'on ' if flush else 'off'}: {_cell(cfg, root, t_out.manifest.digest)}", flush=True)
    same = filecmp.cmp(paths[False], paths[True], shallow=False)
    print(f"{args.dataset} fold {args.fold}: teacher.pt without and with flushing "
          f"{'the same bytes' if same else 'DIFFERENT'}")


def _cell(cfg, root: Path, teacher_digest: str) -> str:
    """The ACGKD banks and data-free students on the teacher in `root`, as benchmarks/distill.py's cell makes them."""
    import json

    from tasks.cache import stage_key

    t_dir, layout = RunLayout(root).stage_dir("teacher"), RunLayout(root / "acgkd")
    g_out = generate.run(cfg, layout, stage_key(cfg, "generate", (teacher_digest,)), teacher_dir=t_dir)
    distill.run(cfg, layout, stage_key(cfg, "distill", (teacher_digest, g_out.manifest.digest)), teacher_dir=t_dir,
                generate_dir=layout.stage_dir("generate"))
    quality = json.loads((layout.stage_dir("generate") / "quality.json").read_text())
    records = json.loads((layout.stage_dir("distill") / "results.json").read_text())["records"]
    accs = [r["test_acc"] for k, r in sorted(records.items()) if k.startswith("pseudo")]
    return (f"bank density {quality['edge_density_mean']:.5f}, teacher agreement {quality['teacher_agreement']:.4f}; "
            f"students {', '.join(f'{a:.3f}' for a in accs)}, mean {sum(accs) / len(accs):.3f}")


if __name__ == "__main__":
    main()
