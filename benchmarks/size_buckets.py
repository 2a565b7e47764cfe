"""Size buckets (`generate.size_buckets`): one chunk of a real bank, generated with the teacher's dense forward on one
padded batch (1) and in node-count groups (4), side by side → docs/benchmarks/size-buckets.md.

    .venv/bin/python benchmarks/size_buckets.py --teachers runs/proteins-cv10-fold3/teacher runs/imdb-binary-cv10-fold0/teacher

For each teacher stage folder (its `teacher.pt` and metadata only, as the generate stage reads them), chunk 0 of bank
0 of the default plan is optimised for `--iterations` steps by each generator at each setting, in this process, one
thread. Reported: CPU seconds per iteration of this process (median of `--repeats`; CPU time, not wall time, so that
other jobs on the machine do not distort the ratio), the padded work B·N² against the buckets' Σ B_b·n_b²,
and how far the two settings' results drift apart (teacher logits on the finished graphs, max |Δ|, and the share of
edges that differ): the same computation up to float rounding, which a long optimisation can amplify.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def chunk_context(teacher_dir: Path, buckets: int, method: str, iterations: int):
    """(GenContext, node counts [B], targets [B]) of chunk 0, bank 0 under the default config."""
    import torch

    from gfkd.config import resolve_config
    from gfkd.generators.bank import plan_bank
    from gfkd.stages.generate import auto_num_graphs
    from gfkd.generators.base import GenContext
    from gfkd.stages.teacher import load_teacher

    model, meta, bn = load_teacher(teacher_dir / "teacher.pt")
    data = meta["data"]
    key = "generate.iterations" if method == "acgkd" else "generate.gfkd.iterations"  # deepinvg: GFKD's schedule
    cfg = resolve_config(None, [f"generate.size_buckets={buckets}", f"{key}={iterations}"])
    gc = cfg.generate
    plan = plan_bank(data, auto_num_graphs(meta), cfg.split_seed, 0, gc.nodes, gc.targets, gc.max_nodes,
                     gc.batch_size, gc.node_range)
    idx = plan.chunks[0]
    return GenContext(model, data, bn, gc, torch.device("cpu")), plan.num_nodes[idx], plan.targets[idx]


def measure(teacher_dir: Path, method: str, buckets: int, iterations: int, repeats: int) -> dict:
    from gfkd.generators import acgkd, deepinvg, gfkd
    from gfkd.generators.bank import make_generator
    from gfkd.generators.base import node_mask, teacher_verdict

    ctx, n, y = chunk_context(teacher_dir, buckets, method, iterations)
    run = {"acgkd": acgkd.generate, "gfkd": gfkd.generate, "deepinvg": deepinvg.generate}[method]
    times, final = [], None
    for _ in range(repeats):
        t0 = time.process_time()  # CPU seconds of this one-thread process: other jobs on the cores do not count
        final = run(ctx, n, y, make_generator(0, 0, 0, "generate"))
        times.append((time.process_time() - t0) / iterations)
    groups = None if method == "acgkd" else ctx.buckets(node_mask(n))
    logits, _ = teacher_verdict(ctx, final)
    return {"s_per_iter": median(times), "graphs": len(n), "n_max": int(n.max()),
            "padded": len(n) * int(n.max()) ** 2,
            "work": len(n) * int(n.max()) ** 2 if groups is None else sum(len(i) * b * b for i, b in groups),
            "groups": "one batch" if groups is None else " + ".join(f"{len(i)}×{b}" for i, b in groups),
            "logits": logits, "adj": final.adj}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", nargs="+", type=Path, required=True, help="teacher stage folders")
    p.add_argument("--methods", nargs="+", default=["gfkd", "deepinvg"], choices=["acgkd", "gfkd", "deepinvg"],
                   help="acgkd keeps one padded batch whatever the setting (its row is a control)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--buckets", type=int, default=4, help="the grouped setting (against 1)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "size-buckets.md")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    rows = []
    for teacher_dir in args.teachers:
        import json

        dataset = json.loads((teacher_dir / "teacher.json").read_text())["data"]["dataset"]
        for method in args.methods:
            one = measure(teacher_dir, method, 1, args.iterations, args.repeats)
            grouped = measure(teacher_dir, method, args.buckets, args.iterations, args.repeats)
            differ = float((one["adj"] != grouped["adj"]).float().mean())
            rows.append((dataset, method, one, grouped, float((one["logits"] - grouped["logits"]).abs().max()), differ))
            print(f"{dataset} {method}: {one['s_per_iter']:.3f} → {grouped['s_per_iter']:.3f} CPU s/iteration", flush=True)
    from gfkd.versions import checkout_commit

    commit = checkout_commit(REPO)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, one torch thread, torch {torch.__version__}, at commit "
               f"{commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    command = ".venv/bin/python benchmarks/size_buckets.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    lines = ["# Size buckets: the teacher's dense forward in node-count groups", "",
             "Written by `benchmarks/size_buckets.py`; do not edit by hand.", "", f"Command: `{command}`", "",
             f"Machine: {machine}", "",
             f"Chunk 0 of bank 0 (the default plan) per teacher, {args.iterations} iterations per generator and setting, "
             f"median of {args.repeats}. Work counts the dense [B, N, N] entries a forward multiplies: B·N² in one padded "
             "batch, Σ B_b·n_b² in groups. The last two columns compare the finished graphs of the two settings.", "",
             f"| dataset | generator | graphs | largest | groups (size_buckets={args.buckets}) | work / padded | "
             "CPU s/iteration, one batch | CPU s/iteration, groups | speed-up | max abs Δ teacher logit | edges that differ |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset, method, one, grouped, dlogit, differ in rows:
        lines.append(f"| {dataset} | {method} | {one['graphs']} | {one['n_max']} | {grouped['groups']} | "
                     f"{grouped['work'] / grouped['padded']:.3f} | {one['s_per_iter']:.3f} | {grouped['s_per_iter']:.3f} | "
                     f"{one['s_per_iter'] / grouped['s_per_iter']:.1f}× | {dlogit:.2g} | {differ:.4f} |")
    from gfkd.io.atomic import write_atomic

    text = "\n".join(lines) + "\n"
    write_atomic(args.out, lambda tmp: tmp.write_text(text))
    print(args.out)


if __name__ == "__main__":
    main()
