"""Generate stage: pseudo-graphs from the teacher alone, written as Parquet shards (acgkd.md §2, §7; gfkd.md).

Reads only the teacher's checkpoint and metadata (never the dataset). Each of `generate.banks` banks of M graphs is
cut into chunks; each chunk is one independent, seeded optimisation written as one shard. Shards are written into
the stage's staging folder, which survives a kill: the rerun (same cache key) writes only the missing shards, and
with a fixed seed the final set equals an uninterrupted run's. Outputs in `<run>/generate/`: `shards/*.parquet`
(with `_state-*.pt`, the generator's parameters, and `_time-*.json` beside each), `shards/_manifest.json`,
`quality.json`, `graphs.png`, `degrees.png`, `manifest.json` last.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from gfkd.config import RunConfig
from gfkd.errors import ConfigError
from gfkd.generators.bank import plan_bank
from gfkd.generators.base import GenContext, state_name
from gfkd.io.atomic import write_json
from gfkd.io.manifest import Manifest
from gfkd.io.shards import SHARD_MANIFEST, read_shard_set, write_shard_manifest
from gfkd.layout import RunLayout
from gfkd.memory import StagePeak
from gfkd.plots import degree_histogram, pseudo_graph_grid
from gfkd.stages.chunks import job, run_jobs, shard_name, timing_name, usable_workers, worker_pool, write_chunk
from gfkd.stages.common import StageOutcome, cached, prepare_runtime, publish, resumable_staging, save_figure
from gfkd.stages.teacher import load_teacher
from gfkd.tracking import NullLogger

log = logging.getLogger(__name__)

STAGE = "generate"


def auto_num_graphs(meta: dict) -> int:
    """M under `generate.num_graphs=auto`: the protocol's training portion (acgkd.md §2). Under cv10 the 8 training
    folds, as the teacher trained on; under holdout ⌊0.7·N⌋, its validation part included (protocol.md §2–3, as
    GFKD did), which the teacher's 6/7 is not."""
    split = meta.get("split", {})
    if split.get("protocol") == "holdout":
        return int(split["sizes"]["train"]) + int(split["sizes"]["val"])
    return int(meta["data"]["num_train_graphs"])


def run(cfg: RunConfig, layout: RunLayout, cache_key: str, logger: NullLogger = NullLogger(), force: bool = False,
        teacher_dir: Path | None = None) -> StageOutcome:
    """Generate (or find finished) the pseudo-graph banks of this run from the teacher in `teacher_dir`."""
    if (done := cached(layout, STAGE, cache_key, force)) is not None:
        return done
    t_stage = time.perf_counter()
    gc = cfg.generate
    # flush denormals: late in the κ schedule σ((α + ℓ)/κ) underflows (acgkd.md §7)
    device = prepare_runtime(cfg.run, flush_denormal=True)
    teacher_pt = Path(teacher_dir or layout.stage_dir("teacher")) / "teacher.pt"
    teacher, meta, bn_eval = load_teacher(teacher_pt)
    data_meta = meta["data"]
    ctx = GenContext(teacher.to(device), data_meta, {k: v.to(device) for k, v in bn_eval.items()}, gc, device)
    M = auto_num_graphs(meta) if gc.num_graphs == "auto" else int(gc.num_graphs)
    method = "deepinvg" if gc.method == "deepinv" else gc.method
    steps = {"acgkd": gc.iterations, "gfkd": gc.gfkd.resolved_iterations, "deepinvg": gc.gfkd.resolved_iterations, "randg": 1}[method]
    logger.params({"generate": gc.model_dump(mode="json"), "num_graphs_per_bank": M, "method": method,
                   "teacher_dir": str(teacher_dir or layout.stage_dir("teacher"))})

    staging = resumable_staging(layout, STAGE, cache_key, fresh=force)
    shard_dir = staging / "shards"
    shard_dir.mkdir(exist_ok=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    nodes, targets, node_range = gc.nodes, gc.targets, gc.node_range
    if method == "gfkd" and gc.gfkd.parity == "reference":  # the reference code: uniform targets, MUTAG n ~ U{10..29}
        targets = "uniform"
        if data_meta.get("dataset") == "MUTAG":
            nodes, node_range = "range", (10, 29)
    if targets == "prior" and "class_counts" not in data_meta:
        raise ConfigError("generate.targets=prior: the teacher's metadata has no class_counts; retrain the teacher or "
                          "use generate.targets=balanced")
    if gc.confidence_low < 1 and method != "acgkd":
        raise ConfigError(f"generate.confidence_low={gc.confidence_low}: soft targets are built for generate.method=acgkd "
                          f"only, not {method}; set generate.confidence_low=1")
    plans = [plan_bank(data_meta, M, cfg.split_seed, bank, nodes, targets, gc.max_nodes, gc.batch_size, node_range,
                       confidence_low=gc.confidence_low) for bank in range(gc.banks)]
    chunks = [(bank, c) for bank, plan in enumerate(plans) for c in range(len(plan.chunks))]
    files = [f"shards/{shard_name(bank, c)}" for bank, c in chunks]
    # a shard already there finished before a kill: written atomically, so whole (unless damaged from outside)
    todo = [(bank, c) for bank, c in chunks if not _kept_shard(shard_dir, shard_name(bank, c))]
    workers = usable_workers(gc.workers, len(todo), device)
    with StagePeak() as mem:  # the stage's own peak, not an earlier stage's of this process (gfkd run's teacher)
        gen_wall, worker_rss = 0.0, 0
        bar = tqdm(total=len(files), initial=len(files) - len(todo), desc=f"generate ({method})", unit="shard",
                   disable=not sys.stderr.isatty())
        log = lambda s, m: logger.metrics(m, step=s)  # noqa: E731
        if workers <= 1:
            for bank, c in todo:
                gen_wall += write_chunk(ctx, method, plans[bank], bank, c, M, steps, cfg.split_seed, cache_key,
                                        shard_dir, log)
                bar.update()
        else:
            jobs = [job(method, plans[bank], bank, c, M, steps, cfg.split_seed, cache_key, shard_dir)
                    for bank, c in todo]
            with worker_pool(cfg, teacher_pt, workers) as pool:
                for _bank, _c, wall, records, rss in run_jobs(pool, jobs):
                    for step, m in records:
                        log(step, m)
                    gen_wall += wall
                    worker_rss = max(worker_rss, rss)
                    bar.update()
        bar.close()
        written = len(todo)
        peak_rss, rss_growth = mem.read()
        measured_alone = mem.alone
    write_shard_manifest(shard_dir, [f.split("/", 1)[1] for f in files], cache_key, generator=method,
                         banks=gc.banks, graphs_per_bank=M)

    quality, figs = summarise(shard_dir, data_meta, method)
    metrics = {f"generate/quality/{k}": v for k, v in quality.items() if isinstance(v, (int, float))}
    metrics |= {"generate/time/wall_s": _total_wall(shard_dir), "generate/time/this_run_wall_s": gen_wall,
                "generate/time/stage_s": time.perf_counter() - t_stage,
                "generate/params/pseudo_graph": float(_total_params(shard_dir)),
                "generate/size/shard_bytes": float(sum((staging / f).stat().st_size for f in files)),
                "generate/shards/written": float(written), "generate/shards/resumed": float(len(files) - written),
                "generate/mem/peak_rss_bytes": float(peak_rss),
                "generate/mem/rss_growth_bytes": float(rss_growth),
                "generate/mem/measured_alone": float(measured_alone),
                "generate/time/workers": float(workers)}
    if workers > 1:  # the largest worker's peak; the two above are this process's
        metrics["generate/mem/worker_peak_rss_bytes"] = float(worker_rss)
    if device.type == "cuda":
        metrics["generate/mem/peak_bytes"] = float(torch.cuda.max_memory_allocated(device))
    write_json(staging / "quality.json", quality)
    for name, fig in figs.items():
        save_figure(fig, staging / name, logger, STAGE)
    logger.metrics(metrics)
    logger.artifact(staging / "quality.json", "generate")
    logger.artifact(shard_dir / SHARD_MANIFEST, "generate")
    logger.flush()
    sidecars = [f"shards/{fn(f.split('/', 1)[1])}" for f in files for fn in (timing_name, state_name)]
    sidecars = [f for f in sidecars if (staging / f).is_file()]
    out_files = [*files, *sidecars, f"shards/{SHARD_MANIFEST}", "quality.json", *figs]
    manifest = Manifest.build(STAGE, cache_key, staging, out_files, volatile=(f"shards/{timing_name('*')}",),
                              metrics=metrics, info={"method": method, "banks": gc.banks, "graphs_per_bank": M},
                              mlflow_run_id=logger.run_id)
    return publish(layout, STAGE, staging, manifest)


def _kept_shard(shard_dir: Path, name: str) -> bool:
    """Whether shard `name` of a killed run is there to keep. Written atomically after its sidecars, it is whole
    unless something outside gfkd damaged it: one that Parquet cannot read, or without its timing sidecar, is
    removed, with a warning naming it, and made again (the same bytes: each chunk's seed is its own)."""
    path = shard_dir / name
    if not path.is_file():
        return False
    try:
        pq.read_metadata(path)
        if (shard_dir / timing_name(name)).is_file():
            return True
        why = f"has no {timing_name(name)}"
    except (OSError, ValueError, pa.ArrowException) as exc:  # a truncated file: ArrowInvalid, a ValueError
        why = f"is unreadable ({str(exc).splitlines()[0][:100]})"
    log.warning("generate: the kept shard %s %s; making it again", path, why)
    path.unlink()
    return False


def _shard_meta(shard_dir: Path) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in pq.read_schema(p).metadata.items()}
            for p in sorted(shard_dir.glob("shard-*.parquet"))]


def _total_wall(shard_dir: Path) -> float:
    """Generation wall time summed over shards (each recorded when it was made, so resumes count once)."""
    return sum(json.loads((shard_dir / timing_name(p.name)).read_text())["wall_s"]
               for p in sorted(shard_dir.glob("shard-*.parquet")))


def _total_params(shard_dir: Path) -> int:
    return sum(int(m["gfkd.num_params"]) for m in _shard_meta(shard_dir))


def summarise(shard_dir: Path, data_meta: dict, method: str) -> tuple[dict, dict]:
    """Quality figures of a finished shard set against the teacher metadata; figures of graphs and degrees."""
    rows = {"label": [], "num_nodes": [], "edges": [], "agree": [], "conf": [], "symmetric": []}
    degrees: list[int] = []
    examples = []
    for table in read_shard_set(shard_dir):
        cols = table.to_pydict()
        for k in range(table.num_rows):
            n, src, dst = cols["num_nodes"][k], cols["src"][k], cols["dst"][k]
            logits = torch.tensor(cols["teacher_logits"][k])
            p = torch.softmax(logits, -1)
            rows["label"].append(cols["label"][k])
            rows["num_nodes"].append(n)
            rows["edges"].append(len(src))
            rows["agree"].append(float(int(p.argmax()) == cols["label"][k]))
            rows["conf"].append(float(p.max()))
            pairs = set(zip(src, dst))
            rows["symmetric"].append(sum((d, s) in pairs for s, d in pairs) / max(len(pairs), 1))
            degrees += np.bincount(np.asarray(dst, dtype=np.int64), minlength=n).tolist()
            if len(examples) < 12 and k % 7 == 0:
                colour = [int(np.argmax(r)) % 10 for r in cols["x"][k]]
                examples.append((n, src, dst, colour))
    n = np.array(rows["num_nodes"], dtype=float)
    e = np.array(rows["edges"], dtype=float)  # directed entries: 2|E| for undirected graphs
    density = np.where(n > 1, e / (n * np.maximum(n - 1, 1)), 0.0)
    quality = {
        "num_graphs": len(n), "nodes_mean": float(n.mean()), "edge_density_mean": float(density.mean()),
        "degree_mean": float(e.sum() / n.sum()), "real_edge_density_mean": float(data_meta["edge_density_mean"]),
        "real_degree_mean": float(data_meta["degree_mean"]), "real_nodes_mean": float(data_meta["nodes_mean"]),
        "teacher_confidence": float(np.mean(rows["conf"])), "symmetric_fraction": float(np.mean(rows["symmetric"])),
        "empty_graph_fraction": float(np.mean(e == 0)),
        "label_counts": np.bincount(rows["label"], minlength=int(data_meta["num_classes"])).tolist(),
    }
    if method != "randg":  # RandG's label column is the teacher argmax: agreement means nothing (protocol.md §4)
        quality["teacher_agreement"] = float(np.mean(rows["agree"]))
        quality["over_fitted"] = float(quality["teacher_agreement"] >= 0.99)
    figs = {"graphs.png": pseudo_graph_grid(examples, f"generate: {method} pseudo-graphs"),
            "degrees.png": degree_histogram(degrees, float(data_meta["degree_mean"]), f"generate: {method} degrees")}
    return quality, figs
