"""The pipeline on one device, CPU or CUDA: each stage's wall time and figures, and the node-level group's, so a GPU
run can be set beside a CPU run of the same code and config → docs/benchmarks/cuda.md.

    python benchmarks/cuda.py --device cuda --out cuda.json --data-root DATA   # on a machine with a GPU
    python benchmarks/cuda.py --device cpu --out cpu.json --data-root DATA
    python benchmarks/cuda.py --report cpu.json cuda.json --out docs/benchmarks/cuda.md

The stages (teacher → generate → distill → group → evaluate) run through `gfkd.stages` in a temporary run folder,
as `gfkd run` runs them but without Prefect or MLflow (so the script needs only gfkd's library dependencies: a GPU
image with torch and PyG needs pydantic alone), under the default config plus `--extra` and `run.device`. Then the
node-level group (`--node`: dataset:backbone,backbone...) trains OAD with the group defaults, one group per seed.
The JSON is rewritten after every step, so a run stopped at a time limit keeps what it finished. Each stage's record
holds its manifest digest (the checksums of its outputs), so two runs of one config show whether they repeat byte for
byte.
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
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("teacher", "generate", "distill", "group", "evaluate")
FIGURES = {  # stage → (manifest metric, label) shown in the report
    "teacher": [("teacher/test/acc", "teacher test accuracy")],
    "generate": [("generate/time/wall_s", "generation wall time (s)"),
                 ("generate/quality/teacher_agreement", "teacher agreement with the targets")],
    "distill": [("distill/test/acc", "data-free student test accuracy (generate.method's; mean over seeds)"),
                ("distill/test/acc_kd_real", "kd_real test accuracy"),
                ("distill/test/acc_student_real", "student_real test accuracy"),
                ("distill/test/collapsed", "collapsed ACGKD students")],
    "group": [("group/test/acc_ensemble", "group ensemble test accuracy"),
              ("group/test/acc_mean", "group mean over students")],
}


def machine_line(device: str) -> str:
    import torch
    import torch_geometric

    from gfkd.versions import cpu_kernels, cpu_model

    where = f"{torch.cuda.get_device_name(0)}, " if device == "cuda" else ""
    return (f"{where}CPU {cpu_model()} ({os.cpu_count()} cores, kernels {cpu_kernels()}); torch {torch.__version__}, "
            f"PyG {torch_geometric.__version__}, Python {platform.python_version()}")


def run_pipeline(args, record: dict, save) -> None:
    """teacher → generate → distill → group → evaluate in a temporary run folder; one record per stage."""
    import torch

    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout
    from gfkd.stages import distill, evaluate, generate, group, teacher
    from tasks.cache import stage_key

    with tempfile.TemporaryDirectory() as d:
        cfg = resolve_config(None, [f"run.device={args.device}", f"run.runs_dir='{d}'", "run.name=cuda-check",
                                    *([f"data.root='{args.data_root}'"] if args.data_root else []), *args.extra])
        record["config"] = {"dataset": cfg.data.dataset, "fold": cfg.protocol.fold, "overrides": args.extra}
        layout = RunLayout(Path(d) / "run")
        dirs: dict[str, Path] = {}
        upstream: tuple[str, ...] = ()
        runners = {"teacher": lambda key: teacher.run(cfg, layout, key),
                   "generate": lambda key: generate.run(cfg, layout, key, teacher_dir=dirs["teacher"]),
                   "distill": lambda key: distill.run(cfg, layout, key, teacher_dir=dirs["teacher"],
                                                      generate_dir=dirs["generate"]),
                   "group": lambda key: group.run(cfg, layout, key, teacher_dir=dirs["teacher"],
                                                  generate_dir=dirs["generate"]),
                   "evaluate": lambda key: evaluate.run(cfg, layout, key, stage_dirs=dict(dirs))}
        for stage in STAGES:
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            out = runners[stage](stage_key(cfg, stage, upstream))
            if args.device == "cuda":
                torch.cuda.synchronize()
            rec = {"stage": stage, "wall_s": time.perf_counter() - t0, "metrics": out.manifest.metrics,
                   "digest": out.manifest.digest,  # the outputs' checksums: equal digests = a byte-identical rerun
                   "bytes": sum(f.stat().st_size for f in layout.stage_dir(stage).rglob("*") if f.is_file())}
            if args.device == "cuda":
                rec["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
            record["stages"].append(rec)
            save()
            print(f"{stage}: {rec['wall_s']:.1f} s", flush=True)
            dirs[stage] = layout.stage_dir(stage)
            upstream = (*upstream, out.manifest.digest)


def run_node(args, record: dict, save) -> None:
    """OAD (group defaults) on each dataset × backbone of `--node`, one group per seed."""
    import torch

    from gfkd.config import GroupConfig, RunSection
    from gfkd.data.datasets import resolve_data_root
    from gfkd.group.node import load_citation, settings_from_config, train_group
    from gfkd.stages.common import prepare_runtime

    device = prepare_runtime(RunSection(device=args.device))  # as `gfkd group` does: threads, deterministic kernels
    with tempfile.TemporaryDirectory() as cache:
        for spec in args.node:
            dataset, _, backbones = spec.partition(":")
            g = load_citation(dataset, resolve_data_root(args.data_root), Path(cache), False, device)
            for backbone in (backbones or "gcn").split(","):
                s = settings_from_config(GroupConfig(backbone=backbone, method="oad"))
                for seed in range(args.node_seeds):
                    t0 = time.perf_counter()
                    run = train_group(g, s, seed)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    record["node"].append({"dataset": dataset, "backbone": backbone, "seed": seed,
                                           "wall_s": time.perf_counter() - t0,
                                           "mean_students": run.report["mean_students"],
                                           "ensemble": run.report["ensemble"]})
                    save()
                    print(f"{dataset} {backbone} seed {seed}: {record['node'][-1]['wall_s']:.1f} s", flush=True)


def _num(v, digits: int = 4) -> str:
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _label(i: int, run: dict) -> str:
    return f"[{i}] {run['device'].upper()}"


def render(runs: list[dict], command: str) -> str:
    """Side by side: one column per run, numbered as in the list of runs above the tables."""
    labels = [_label(i, r) for i, r in enumerate(runs, 1)]
    head = "| | " + " | ".join(labels) + " |\n|---|" + "---|" * len(runs)
    lines = [f"# The pipeline on CPU and CUDA\n\nWritten by `{command}` from these runs (wall times are the stages' own, "
             "without Prefect or MLflow around them; `—`: not run or not reached):\n"]
    for label, r in zip(labels, runs):
        cfg = r.get("config", {})
        over = f", with `{' '.join(cfg['overrides'])}`" if cfg.get("overrides") else ""
        missing = [s for s in STAGES if s not in {x["stage"] for x in r["stages"]}] if cfg else []
        what = (f"the default config on {cfg['dataset']} fold {cfg['fold']}{over}" if cfg else "the node groups only")
        lines.append(f"- **{label}**: {what}, "
                     f"`run.device={r['device']}`; `{r['command']}` at {r['commit']}, {r['date']}; {r['machine']}"
                     + (f" ({r['note']})" if r.get("note") else "")
                     + (f"; stopped by: {r['error']}" if r.get("error") else "")
                     + (f"; stages not reached: {', '.join(missing)}" if missing else ""))
    lines += ["\n## Stages\n", head]
    by = [{s["stage"]: s for s in r["stages"]} for r in runs]
    for stage in STAGES:
        lines.append(f"| {stage}: wall time (s) | " + " | ".join(_num(b[stage]["wall_s"], 1) if stage in b else "—"
                                                                   for b in by) + " |")
        for key, label in FIGURES.get(stage, []):
            lines.append(f"| {stage}: {label} | " + " | ".join(
                _num(b[stage]["metrics"].get(key), 1 if key.endswith("_s") else 4) if stage in b else "—"
                for b in by) + " |")
        if any(stage in b and "digest" in b[stage] for b in by):
            lines.append(f"| {stage}: outputs' digest | " + " | ".join(
                f"`{b[stage]['digest'][:12]}`" if stage in b and "digest" in b[stage] else "—" for b in by) + " |")
        if any(stage in b and "bytes" in b[stage] for b in by):
            lines.append(f"| {stage}: outputs' size (MiB) | " + " | ".join(
                _num(b[stage]["bytes"] / 2**20, 1) if stage in b and "bytes" in b[stage] else "—" for b in by) + " |")
        if any(stage in b and "peak_gpu_bytes" in b[stage] for b in by):
            lines.append(f"| {stage}: peak GPU memory (MiB) | " + " | ".join(
                _num(b[stage]["peak_gpu_bytes"] / 2**20, 0) if stage in b and "peak_gpu_bytes" in b[stage] else "—"
                for b in by) + " |")
    node = sorted({(n["dataset"], n["backbone"]) for r in runs for n in r["node"]})
    if node:
        lines += ["\n## Node-level group (OAD, group defaults, K = 4)\n",
                  "Per seed: wall time (s) / mean test accuracy over students / the ensemble's, at the epoch chosen on "
                  "validation.\n", head]
        for ds, bb in node:
            cells = []
            for r in runs:
                rows = [n for n in r["node"] if (n["dataset"], n["backbone"]) == (ds, bb)]
                cells.append("; ".join(f"seed {n['seed']}: {n['wall_s']:.1f} / {n['mean_students']:.4f} / "
                                       f"{n['ensemble']:.4f}" for n in rows) or "—")
            lines.append(f"| {ds}, {bb.upper()} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--extra", nargs="*", default=[], help="key=value overrides of the pipeline's config")
    ap.add_argument("--node", nargs="*", default=["Cora:gcn,gat,sage"], help="dataset:backbone,... for the node group")
    ap.add_argument("--node-seeds", type=int, default=1)
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--commit", default=None, help="the commit to record where the tree has no .git (a device copy)")
    ap.add_argument("--report", nargs="+", type=Path, help="render these JSON files side by side; train nothing")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    command = "python benchmarks/cuda.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.report:
        text = render([json.loads(p.read_text()) for p in args.report], command)
        args.out.write_text(text)
        return
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    record = {"device": args.device, "command": command, "machine": machine_line(args.device),
              "commit": args.commit or (git.stdout.strip() if git.returncode == 0 else "unknown"),
              "date": time.strftime("%Y-%m-%d"), "stages": [], "node": []}

    def save() -> None:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(args.out)

    save()
    try:
        if args.node:
            run_node(args, record, save)
        if not args.skip_pipeline:
            run_pipeline(args, record, save)
    except Exception as exc:  # kept in the JSON with what finished before it
        record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        record["traceback"] = traceback.format_exc()
        save()
        raise


if __name__ == "__main__":
    main()
