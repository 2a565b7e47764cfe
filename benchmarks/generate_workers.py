"""Worker processes in the generate stage (`generate.workers`): the stage's wall time with 1 and with W processes on
the same teacher and config, and whether the shards came out the same → docs/benchmarks/generate-workers.md.

    .venv/bin/python benchmarks/generate_workers.py --teachers runs/mutag-cv10-fold0/teacher --workers 2

For each teacher stage folder (its `teacher.pt` and metadata only, as the generate stage reads them), the generate
stage runs from nothing into a temporary folder, once per setting, in this process (the workers are its children).
Reported: the stage's wall time, the CPU seconds of this process and its workers together, and whether every
non-volatile output file (shards, generator states, manifests, quality.json, plots) has the same SHA-256 at both
settings. Nothing else should run on the machine: the speed-up is what free cores give.
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
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage_once(teacher_dir: Path, workers: int, extra: list[str]) -> dict:
    """The generate stage from nothing at `generate.workers=workers`: wall and CPU seconds, output digests."""
    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout
    from gfkd.stages import generate

    dataset = json.loads((teacher_dir / "teacher.json").read_text())["data"]["dataset"]
    cfg = resolve_config(None, [f"data.dataset={dataset}", *extra, f"generate.workers={workers}"])
    with tempfile.TemporaryDirectory() as d:
        cpu0, t0 = _cpu_s(), time.perf_counter()
        out = generate.run(cfg, RunLayout(Path(d)), "workers-benchmark", teacher_dir=teacher_dir)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    m = out.manifest.metrics
    return {"dataset": dataset, "workers": int(m["generate/time/workers"]), "wall_s": wall, "cpu_s": cpu,
            "shards": int(m["generate/shards/written"]), "method": out.manifest.info["method"],
            "digests": {k: f.sha256 for k, f in out.manifest.files.items() if not f.volatile}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", nargs="+", type=Path, required=True, help="teacher stage folders")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the parallel setting (against 1)")
    p.add_argument("--extra", nargs="*", default=[], help="config overrides for both settings, e.g. generate.banks=2")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "generate-workers.md")
    args = p.parse_args()
    import torch

    rows = []
    for teacher_dir in args.teachers:
        one = stage_once(teacher_dir, 1, args.extra)
        many = stage_once(teacher_dir, args.workers, args.extra)
        same = one["digests"] == many["digests"]
        rows.append((one, many, same))
        print(f"{one['dataset']}: {one['wall_s']:.1f} s → {many['wall_s']:.1f} s with {many['workers']} workers; "
              f"outputs {'the same' if same else 'DIFFERENT'}", flush=True)
    from gfkd.versions import checkout_commit

    commit = checkout_commit(REPO)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, at commit {commit}, "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    command = ".venv/bin/python benchmarks/generate_workers.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    lines = ["# Generate stage: chunks in worker processes", "",
             "Written by `benchmarks/generate_workers.py`; do not edit by hand.", "", f"Command: `{command}`", "",
             f"Machine: {machine}", "",
             "The generate stage from nothing, once with `generate.workers=1` and once with W processes (each at "
             "run.threads, default 1). CPU seconds count this process and its workers. Same outputs: every "
             "non-volatile file of the stage (shards, generator states, quality.json, plots) has the same SHA-256 at "
             "both settings.", "",
             "| dataset | generator | shards | wall s, 1 process | wall s, W workers | W | speed-up | CPU s, 1 | CPU s, W | same outputs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for one, many, same in rows:
        lines.append(f"| {one['dataset']} | {one['method']} | {one['shards']} | {one['wall_s']:.1f} | {many['wall_s']:.1f} | "
                     f"{many['workers']} | {one['wall_s'] / many['wall_s']:.2f}× | {one['cpu_s']:.1f} | {many['cpu_s']:.1f} | "
                     f"{'yes' if same else 'no'} |")
    from gfkd.io.atomic import write_atomic

    text = "\n".join(lines) + "\n"
    write_atomic(args.out, lambda tmp: tmp.write_text(text))
    print(args.out)


if __name__ == "__main__":
    main()
