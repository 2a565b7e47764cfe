"""Checkpointing the teacher's layers in budget-mode ACGKD generation (`generate.acgkd.checkpoint`): time per step
and peak RSS of one chunk, with and without, on a trained teacher → docs/benchmarks/checkpoint.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/checkpoint.py --teacher runs/<run>/teacher/teacher.pt

Each setting runs in its own process (peak RSS is per process) on bank 0's first chunk of the teacher's data
metadata, at one torch thread; the two chunks must come out identical (the option changes memory, not graphs).
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
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one(teacher_pt: str, iterations: int, checkpoint: bool) -> dict:
    """Generate bank 0's first chunk; time per step, peak RSS and a digest of the graphs."""
    import hashlib

    import torch

    from gfkd.config import resolve_config
    from gfkd.generators import acgkd
    from gfkd.generators.bank import make_generator, plan_bank
    from gfkd.stages.generate import auto_num_graphs
    from gfkd.generators.base import GenContext
    from gfkd.stages.teacher import load_teacher

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    teacher, meta, bn = load_teacher(Path(teacher_pt))
    cfg = resolve_config(None, [f"generate.iterations={iterations}", f"generate.acgkd.checkpoint={str(checkpoint).lower()}"])
    ctx = GenContext(teacher, meta["data"], bn, cfg.generate, torch.device("cpu"))
    plan = plan_bank(meta["data"], auto_num_graphs(meta), 0, 0, batch_size=cfg.generate.batch_size)
    idx = plan.chunks[0]
    n = plan.num_nodes[idx]
    mode, xi = acgkd.resolve_xi(ctx, int(n.max()))
    t0 = time.perf_counter()
    final = acgkd.generate(ctx, n, plan.targets[idx], make_generator(0, 0, 0, "generate"))
    wall = time.perf_counter() - t0
    digest = hashlib.sha256(final.adj.numpy().tobytes() + final.x.numpy().tobytes()).hexdigest()[:16]
    return {"checkpoint": checkpoint, "ms_per_step": 1000 * wall / iterations, "graphs": len(idx), "nodes": int(n.sum()),
            "mode": mode, "xi": xi, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "digest": digest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="a teacher.pt of the teacher stage")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "checkpoint.md")
    ap.add_argument("--one", choices=["true", "false"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.teacher, args.iterations, args.one == "true")))
        return
    rows = []
    for ck in ("false", "true"):
        out = subprocess.run([sys.executable, __file__, "--teacher", args.teacher, "--iterations", str(args.iterations),
                              "--one", ck], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    off, on = rows
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/checkpoint.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    lines = ["# Checkpointing the teacher in budget-mode generation", "",
             f"Command: `{cmd}`; {platform.machine()} CPU, one torch thread, other jobs may have shared the machine.",
             f"One chunk: {off['graphs']} graphs, {off['nodes']} nodes, ξ mode {off['mode']} at ξ = {off['xi']:.3g}, "
             f"{args.iterations} steps.", "",
             "| generate.acgkd.checkpoint | ms / step | peak RSS MB | graphs (sha256 of adjacency and features) |",
             "|---|---|---|---|"]
    lines += [f"| {str(r['checkpoint']).lower()} | {r['ms_per_step']:.0f} | {r['peak_rss_mb']:.0f} | {r['digest']} |"
              for r in rows]
    same = "the same graphs" if off["digest"] == on["digest"] else "DIFFERENT graphs (a defect)"
    lines += ["", f"Checkpointing: {on['ms_per_step'] / off['ms_per_step']:.2f}× the time per step, "
                  f"{off['peak_rss_mb'] - on['peak_rss_mb']:+.0f} MB of peak RSS saved, {same}.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
