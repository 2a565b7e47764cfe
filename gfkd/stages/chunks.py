"""One chunk of the generate stage: optimise it and write its shard, in this process or in worker processes.

Each chunk is an independent optimisation seeded by (split seed, bank, chunk), so chunks can run side by side:
`generate.workers = W` (CPU only) starts W spawned processes that each load the teacher once and then take chunks
from a queue. At a fixed `run.threads` of 1 (the default) a worker runs the same code with the same settings as the
stage would in its own process, so it writes the same shard bytes (tests/stages/test_generate.py); only the order in
which shards appear changes. (With more threads, the floats follow the thread count, and denormal flushing, which
torch sets per thread, reaches all of a fresh worker's threads but only the calling thread of a process whose thread
pool an earlier stage started; `run.threads=auto` gives each worker the usable cores shared out.) Each shard and
sidecar is written atomically by the process that made it, so a kill at any point leaves whole shards that a rerun
keeps.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch

from gfkd.config import RunConfig
from gfkd.errors import StageError
from gfkd.generators import acgkd, deepinvg, gfkd, randg
from gfkd.generators.bank import BankPlan, make_generator
from gfkd.generators.base import GenContext, sidecar_name, state_name, teacher_verdict
from gfkd.io.atomic import write_json
from gfkd.io.checkpoint import save_training_state
from gfkd.io.shards import graphs_to_table, shard_schema, write_shard
from gfkd.stages.common import prepare_runtime
from gfkd.stages.teacher import load_teacher

GENERATORS = {"acgkd": acgkd.generate, "gfkd": gfkd.generate, "randg": randg.generate,
              "deepinvg": deepinvg.generate, "deepinv": deepinvg.generate}
Log = Callable[[int, dict], None]


def shard_name(bank: int, chunk: int) -> str:
    return f"shard-b{bank:02d}-c{chunk:03d}.parquet"


def timing_name(shard: str) -> str:
    """The sidecar with a shard's wall time (volatile: kept out of the shard's bytes)."""
    return sidecar_name(shard, "time", ".json")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_chunk(ctx: GenContext, method: str, plan: BankPlan, bank: int, chunk: int, graphs_per_bank: int,
                steps: int, seed: int, cache_key: str, shard_dir: Path, log: Log | None = None) -> float:
    """Optimise chunk `chunk` of bank `bank` and write its shard with the timing and state sidecars (each file
    atomically, the shard last); returns the optimisation's wall seconds."""
    name = shard_name(bank, chunk)
    idx = plan.chunks[chunk]
    gen = make_generator(seed, bank, chunk, "generate", device=ctx.device)
    offset = (bank * len(plan.chunks) + chunk) * steps
    soft = {} if plan.confidence is None else {"confidence": plan.confidence[idx]}
    _sync(ctx.device)
    t0 = time.perf_counter()
    final = GENERATORS[method](ctx, plan.num_nodes[idx], plan.targets[idx], gen, log=log, step_offset=offset, **soft)
    _sync(ctx.device)
    wall = time.perf_counter() - t0
    logits, difficulty = teacher_verdict(ctx, final)
    schema = shard_schema(ctx.num_features, ctx.num_classes, generator=method, num_params=final.num_params,
                          clamped=plan.clamped, cache_key=cache_key, **{k: f"{v:.6g}" for k, v in final.info.items()})
    table = graphs_to_table(bank * graphs_per_bank + idx.numpy(), bank, final.targets, final.num_nodes, final.adj,
                            final.edge_prob, final.x, logits, difficulty, method, final.gen_step, schema)
    write_json(shard_dir / timing_name(name), {"wall_s": wall})
    if final.state:  # the generator's parameters (α or Z/w/b, Φ), tensors only, for later rounds
        save_training_state(shard_dir / state_name(name), final.state)
    write_shard(shard_dir / name, table)
    return wall


# --- worker processes -------------------------------------------------------------------------------------------

_CTX: GenContext | None = None
_INIT_ERROR: Exception | None = None
# A stage ended by Ctrl-C or a kill leaves its pool's named semaphores registered; multiprocessing's resource tracker
# unlinks them and warns about each "leak" on the terminal. The clean-up stays, the warning goes.
_QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"


_DEFERRED = (signal.SIGINT, signal.SIGTERM)  # handled only once the workers are created (`_interrupts_held`)


def _exit_with_parent(parent: int) -> None:
    """End this worker when the stage's process is gone (killed without the chance to stop its pool)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _init_worker(cfg: RunConfig, teacher_pt: str, threads: int) -> None:
    """Signals, runtime settings and the teacher; an error here is kept and raised by each job, so the stage reports
    it (an initializer that raises would only break the pool, with no message)."""
    global _CTX, _INIT_ERROR
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # Ctrl-C reaches the whole group: leave quietly
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since the spawn (`_interrupts_held`)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        if cfg.run.threads == "auto":
            torch.set_num_threads(threads)
        prepare_runtime(cfg.run, flush_denormal=True)  # after the thread count: flushing is set per thread
        teacher, meta, bn_eval = load_teacher(Path(teacher_pt))
        _CTX = GenContext(teacher, meta["data"], bn_eval, cfg.generate, torch.device("cpu"))
    except Exception as exc:  # noqa: BLE001 - handed to the stage by `_run_job`
        _INIT_ERROR = exc


class ChunkJob(NamedTuple):
    """One chunk's arguments for a worker, in plain Python values: a tensor would travel through torch's
    shared-memory pickler, which opens a Unix socket under the temp dir (too long a path there fails)."""

    method: str
    plan: dict  # BankPlan as lists: num_nodes, targets, chunks, clamped, confidence
    bank: int
    chunk: int
    graphs_per_bank: int
    steps: int
    seed: int
    cache_key: str
    shard_dir: str


def job(method: str, plan: BankPlan, bank: int, chunk: int, graphs_per_bank: int, steps: int, seed: int,
        cache_key: str, shard_dir: Path) -> ChunkJob:
    """The `ChunkJob` of chunk `chunk` of bank `bank` (its whole plan travels: a few thousand integers)."""
    plain = {"num_nodes": plan.num_nodes.tolist(), "targets": plan.targets.tolist(), "clamped": plan.clamped,
             "chunks": [c.tolist() for c in plan.chunks],
             "confidence": None if plan.confidence is None else plan.confidence.tolist()}
    return ChunkJob(method, plain, bank, chunk, graphs_per_bank, steps, seed, cache_key, str(shard_dir))


def _run_job(j: ChunkJob) -> tuple[int, int, float, list[tuple[int, dict]], int]:
    """(bank, chunk, wall seconds, the logged (step, metrics), this worker's peak RSS in bytes)."""
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    p, conf = j.plan, j.plan["confidence"]
    plan = BankPlan(num_nodes=torch.tensor(p["num_nodes"], dtype=torch.long),
                    targets=torch.tensor(p["targets"], dtype=torch.long),
                    chunks=[torch.tensor(c, dtype=torch.long) for c in p["chunks"]], clamped=p["clamped"],
                    confidence=None if conf is None else torch.tensor(conf, dtype=torch.float32))
    records: list[tuple[int, dict]] = []
    wall = write_chunk(_CTX, j.method, plan, j.bank, j.chunk, j.graphs_per_bank, j.steps, j.seed, j.cache_key,
                       Path(j.shard_dir), log=lambda step, m: records.append((step, {k: float(v) for k, v in m.items()})))
    return j.bank, j.chunk, wall, records, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def usable_workers(requested: int, todo: int, device: torch.device) -> int:
    """The processes the stage starts: one on CUDA and inside a daemonic process (a Dask worker, which may not
    have children), else `requested`, at most one per chunk left."""
    if device.type != "cpu" or multiprocessing.current_process().daemon:
        return 1
    return max(1, min(requested, todo))


@contextmanager
def worker_pool(cfg: RunConfig, teacher_pt: Path, workers: int) -> Iterator[ProcessPoolExecutor]:
    """`workers` spawned processes holding the teacher; on an error (or Ctrl-C) they are terminated, not awaited."""
    threads = max(1, len(os.sched_getaffinity(0)) // workers)  # run.threads=auto: the usable cores shared out
    saved = list(sys.warnoptions)
    sys.warnoptions.append(_QUIET_TRACKER)  # read when the pool's queues start the resource tracker (_QUIET_TRACKER)
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                   initargs=(cfg, str(teacher_pt), threads))
    finally:
        sys.warnoptions[:] = saved
    try:
        yield pool
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())  # Python 3.11 has no public way to stop
        pool.shutdown(wait=False, cancel_futures=True)  # a running task: terminate its process
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout=10)
        raise
    pool.shutdown()


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM off while `ProcessPoolExecutor.submit` spawns the workers, and deliver them after.

    SIGINT is blocked in this thread, so it stays blocked in the workers, which inherit the mask through the exec,
    until their initializer has set its handler: a Ctrl-C during their start-up (seconds of imports) prints no
    traceback. (SIGTERM is not blocked: the pool's clean-up terminates workers that may still be starting.) The mask
    alone is not enough: the kernel hands a process-wide signal to another thread (Prefect's, the pool's), and Python
    then runs the handler here between two bytecodes, possibly between a worker's creation and the write of its
    start-up data; a handler that ends the process there (the CLI's exits at once) left that worker an EOFError
    traceback. So in the main thread the handlers only note the signals meanwhile, and each noted one is raised again
    once every worker has its data."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    noted: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in _DEFERRED} if main else {}
    swap = [sig for sig, h in handlers.items() if h is not None]
    for sig in swap:
        signal.signal(sig, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for sig in swap:
            signal.signal(sig, handlers[sig])
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig in dict.fromkeys(noted):
            signal.raise_signal(sig)


def run_jobs(pool: ProcessPoolExecutor, jobs: list[ChunkJob]) -> Iterator[tuple[int, int, float, list, int]]:
    """`_run_job`'s result per finished chunk, in the order they finish; a worker's exception is raised here, and a
    worker that died (killed, out of memory) is a StageError, not a hang."""
    with _interrupts_held():  # the workers start here
        futures = [pool.submit(_run_job, args) for args in jobs]
    for fut in as_completed(futures):
        try:
            yield fut.result()
        except BrokenProcessPool as exc:
            raise StageError(f"generate: a worker process died while optimising chunks ({exc}); the finished shards "
                             f"are kept: run the same command again to resume, with fewer generate.workers if memory "
                             f"ran out") from None
