"""Teacher accuracy under protocol B (10-fold CV): val-selected test accuracy, mean ± std over folds.

Runs the teacher stage (the same code as `gfkd run`) once per dataset × fold, each fold in its own run folder under
--runs-dir, so an interrupted benchmark resumes where it stopped (finished folds are cached). Writes
docs/teachers.md with the command that produced it.

    python benchmarks/teachers.py --datasets MUTAG PTC_MR PROTEINS IMDB-BINARY
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
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch_geometric

from gfkd.config import resolve_config
from gfkd.io.manifest import load_manifest
from gfkd.layout import RunLayout
from gfkd.stages import teacher
from tasks.cache import stage_key

LITERATURE = {"MUTAG": 85, "PROTEINS": 72, "IMDB-BINARY": 70, "PTC_MR": 58}  # issue 2: GIN literature floor


def run_folds(dataset: str, folds: list[int], runs_dir: Path, overrides: list[str], results_only: bool) -> list[dict]:
    rows = []
    for fold in folds:
        cfg = resolve_config(None, [f"data.dataset='{dataset}'", f"protocol.fold={fold}",
                                    f"run.runs_dir='{runs_dir}'", *overrides])
        layout = RunLayout(runs_dir / cfg.run_name)
        t0 = time.perf_counter()
        if results_only:
            m = load_manifest(layout.manifest("teacher"))
            if m is None:
                continue
            out = teacher.StageOutcome(m, "cached" if m.cache_key == stage_key(cfg, "teacher") else "other code")
        else:
            out = teacher.run(cfg, layout, stage_key(cfg, "teacher"))
        m = out.manifest.metrics
        rows.append({"dataset": dataset, "fold": fold, "status": out.status, **m})
        print(f"{dataset} fold {fold}: test {m['teacher/test/acc']:.3f} val {m.get('teacher/val/acc', float('nan')):.3f} "
              f"epoch {int(m['teacher/select/best_epoch'])} ({out.status}, {time.perf_counter() - t0:.0f}s)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| dataset | folds | test acc (val-selected) | val acc | majority | mean \\|logit\\| | best epoch (median) | "
             "wall s / fold (median) | literature floor |", "|---|---|---|---|---|---|---|---|---|"]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == ds]
        col = lambda k: np.array([r[k] for r in rs])  # noqa: E731
        acc = col("teacher/test/acc")
        lines.append(f"| {ds} | {len(rs)} | {acc.mean():.3f} ± {acc.std():.3f} | {col('teacher/val/acc').mean():.3f} | "
                     f"{col('teacher/test/majority_acc').mean():.3f} | {col('teacher/test/mean_abs_logit').mean():.1f} | "
                     f"{np.median(col('teacher/select/best_epoch')):.0f} | {np.median(col('teacher/time/wall_s')):.0f} | "
                     f"≥ {LITERATURE.get(ds, '—')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(LITERATURE))
    p.add_argument("--folds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--runs-dir", type=Path, default=Path("runs/bench-teachers"))
    p.add_argument("--out", type=Path, default=Path("docs/teachers.md"))
    p.add_argument("--results-only", action="store_true", help="aggregate finished folds, train nothing new")
    p.add_argument("overrides", nargs="*", help="config key=value overrides, e.g. teacher.epochs=100")
    a = p.parse_args()
    rows = []
    for ds in a.datasets:
        rows += run_folds(ds, a.folds, a.runs_dir, a.overrides, a.results_only)
    cmd = "python benchmarks/teachers.py " + " ".join(a for a in sys.argv[1:] if a != "--results-only")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = (f"# Teachers: 10-fold CV accuracy\n\nGIN-5-128 teachers (default `teacher` config: Adam 0.01 halved every 50 "
           f"epochs, 300 epochs, batch 32, label smoothing 0.1, weight decay 5e-4), protocol B (StratifiedKFold 10, "
           f"random_state 12345; validation = previous fold), epoch of lowest validation loss, test accuracy of that "
           f"epoch; mean ± std over folds.\n\nCommand: `{cmd}`\n\n{table(rows)}\n\n"
           f"Device: {torch.device('cpu')} ({platform.processor() or platform.machine()}), float32, torch "
           f"{torch.__version__}, PyG {torch_geometric.__version__}, code at commit {commit or '?'}. Literature floor: the range the GIN literature "
           f"reports, from the issue. Per-fold rows: `{a.out.with_suffix('.json').name}`.\n")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(doc)
    a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(doc)


if __name__ == "__main__":
    main()
