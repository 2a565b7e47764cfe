"""Torch threads per process (`run.threads`) alone and beside other jobs: the teacher stage's wall time at each thread
setting, with 0, 1, 2... one-thread teacher jobs busy on the same machine → docs/benchmarks/threads.md.

    .venv/bin/python benchmarks/threads.py --data-root /work/shared/datasets

Each measurement is a fresh process that trains the teacher stage (MUTAG protocol B fold 0, `--epochs` epochs) in a
temporary run folder and reports its wall time and test accuracy. The competitors are the same stage at one thread,
run for many epochs in their own processes and killed after the measurements of their row. Nothing else should run.
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
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def teacher_stage(threads: str, epochs: int, data_root: str, dataset: str) -> dict:
    """Train the teacher stage once in a temporary run folder; its wall time and test accuracy."""
    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout
    from gfkd.stages import teacher

    with tempfile.TemporaryDirectory() as d:
        cfg = resolve_config(None, [f"run.threads={threads}", f"teacher.epochs={epochs}", f"data.root={data_root}",
                                    f"data.dataset={dataset}", f"run.runs_dir={d}"])
        t0 = time.perf_counter()
        out = teacher.run(cfg, RunLayout(Path(d) / "run"), "threads-benchmark")
        wall = time.perf_counter() - t0
    import torch

    return {"threads": threads, "torch_threads": torch.get_num_threads(), "wall_s": wall,
            "test_acc": out.manifest.metrics["teacher/test/acc"]}


def measure(args, threads: str) -> dict:
    """One measurement in a fresh process (torch's thread pool is set once per process)."""
    cmd = [sys.executable, __file__, "--one", threads, "--epochs", str(args.epochs), "--data-root", args.data_root,
           "--dataset", args.dataset]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode:
        sys.exit(f"threads.py: the measurement at run.threads={threads} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_competitors(args, n: int) -> list[subprocess.Popen]:
    """n one-thread teacher stages that run until killed."""
    cmd = [sys.executable, __file__, "--one", "1", "--epochs", "100000", "--data-root", args.data_root,
           "--dataset", args.dataset]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
             for _ in range(n)]
    time.sleep(args.warmup_s)  # past their imports and data loading, into training
    for p in procs:
        if p.poll() is not None:
            sys.exit("threads.py: a competitor job exited early; run `--one 1` by hand to see why")
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


def render(rows: list[dict], command: str, machine: str) -> str:
    alone = {}  # the mean of the setting's rows without other jobs
    for r in rows:
        if r["competitors"] == 0:
            alone.setdefault(r["threads"], []).append(r["wall_s"])
    alone = {t: sum(w) / len(w) for t, w in alone.items()}
    lines = ["# Torch threads per process, alone and beside other jobs", "",
             "Written by `benchmarks/threads.py`; do not edit by hand.", "",
             f"Command: `{command}`", "", f"Machine: {machine}", "",
             "Wall time of the teacher stage (one fresh process per row), with that many one-thread teacher jobs "
             "training on the same machine; × alone divides by the mean of the same setting's rows without other jobs.", "",
             "| other jobs | run.threads | torch threads | wall s | × alone | teacher test acc |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['competitors']} | {r['threads']} | {r['torch_threads']} | {r['wall_s']:.1f} | "
                     f"{r['wall_s'] / alone[r['threads']]:.2f} | {r['test_acc']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("GFKD_DATA_ROOT", str(REPO.parent / "shared" / "datasets")))
    p.add_argument("--dataset", default="MUTAG")
    p.add_argument("--epochs", type=int, default=60, help="teacher epochs per measurement")
    p.add_argument("--threads", nargs="+", default=["1", "2"], help="run.threads settings to time")
    p.add_argument("--competitors", nargs="+", type=int, default=[0, 1, 2], help="numbers of other one-thread jobs")
    p.add_argument("--repeats", type=int, default=2, help="measurements per setting (each a row)")
    p.add_argument("--warmup-s", type=float, default=8.0, help="seconds the competitors run before the timings")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "threads.md")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement, printed as JSON
    args = p.parse_args()
    if args.one:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stopped competitor still removes its temp folders
        print(json.dumps(teacher_stage(args.one, args.epochs, args.data_root, args.dataset)), flush=True)
        return
    rows = []
    for n in args.competitors:
        procs = start_competitors(args, n)
        try:
            for t in [t for _ in range(args.repeats) for t in args.threads]:
                rows.append({"competitors": n, **measure(args, t)})
                print(f"other jobs {n}, run.threads={t}: {rows[-1]['wall_s']:.1f} s", flush=True)
        finally:
            stop(procs)
    import torch

    from gfkd.versions import checkout_commit

    commit = checkout_commit(REPO)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, at commit {commit}, "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    command = ".venv/bin/python benchmarks/threads.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    from gfkd.io.atomic import write_atomic

    text = render(rows, command, machine)
    write_atomic(args.out, lambda tmp: tmp.write_text(text))
    print(args.out)


if __name__ == "__main__":
    main()
