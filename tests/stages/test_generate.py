"""The generate stage on a tiny trained teacher: every generator writes a valid shard set; kill-and-resume redoes
only missing shards and gives the same set; no dataset is opened."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from gfkd.config import resolve_config
from gfkd.data import datasets
from gfkd.errors import ConfigError, StageError
from gfkd.io.manifest import valid_manifest
from gfkd.io.shards import read_shard_set, table_to_graphs
from gfkd.layout import RunLayout
from gfkd.stages import generate

FAST = ["generate.iterations=6", "generate.gfkd.iterations=6", "generate.banks=2", "generate.batch_size=20",
        "generate.num_graphs=30"]


@pytest.fixture(autouse=True)
def no_dataset(monkeypatch):
    """Data-free guard: the generate stage must not open a dataset."""
    def boom(*a, **k):
        raise AssertionError("the generate stage opened a dataset")
    monkeypatch.setattr(datasets, "load_tu", boom)
    monkeypatch.setattr(datasets, "load_planetoid", boom)


def test_directed_randg_shards_read_back_directed(tmp_path, tiny_teacher_dir):
    cfg = resolve_config(None, [*FAST, "generate.method=randg", "generate.randg.directed=true",
                                "generate.randg.edge_prob=0.3"])
    layout = RunLayout(tmp_path)
    generate.run(cfg, layout, "key", teacher_dir=tiny_teacher_dir)
    graphs = [g for t in read_shard_set(layout.stage_dir("generate") / "shards") for g in table_to_graphs(t)]
    edges = {(int(g.graph_id), int(i), int(j)) for g in graphs for i, j in g.edge_index.t()}
    assert len(graphs) == 60 and any((gid, j, i) not in edges for gid, i, j in edges)  # A_ij without A_ji


@pytest.mark.parametrize("method", ["acgkd", "gfkd", "randg", "deepinvg"])
def test_each_generator_writes_a_readable_shard_set(tmp_path, tiny_teacher_dir, method):
    cfg = resolve_config(None, [*FAST, f"generate.method={method}"])
    layout = RunLayout(tmp_path)
    out = generate.run(cfg, layout, "key", teacher_dir=tiny_teacher_dir)
    assert out.status == "ran" and valid_manifest(layout.manifest("generate"), "key") is not None
    shard_dir = layout.stage_dir("generate") / "shards"
    graphs = [g for t in read_shard_set(shard_dir) for g in table_to_graphs(t)]
    assert len(graphs) == 60 and len({int(g.graph_id) for g in graphs}) == 60  # 2 banks × 30, 2 chunks each
    m = out.manifest.metrics
    assert m["generate/quality/num_graphs"] == 60 and m["generate/shards/written"] == 4
    assert ("generate/quality/teacher_agreement" in m) == (method != "randg")
    # the optimised parameters, summed over every pseudo-graph: pair logits (n(n-1)/2; GFKD's are directed, as
    # published: n(n-1)) and node-type logits n·F (the tiny teacher's set has node features)
    pairs = sum(g.num_nodes * (g.num_nodes - 1) // 2 for g in graphs)
    types = sum(g.num_nodes * g.x.shape[1] for g in graphs)
    assert cfg.generate.gfkd.directed
    expect = {"acgkd": pairs + types, "gfkd": 2 * pairs + types, "deepinvg": types, "randg": 0}[method]
    assert m["generate/params/pseudo_graph"] == expect
    for name in ("graphs.png", "degrees.png", "quality.json"):
        assert (layout.stage_dir("generate") / name).is_file()
    states = sorted((shard_dir).glob("_state-*.pt"))
    if method == "randg":
        assert not states  # nothing optimised, nothing to save
    else:
        assert len(states) == 4
        state = torch.load(states[0], weights_only=True)
        key = {"acgkd": "alpha", "gfkd": "theta", "deepinvg": "phi"}[method]
        assert key in state and state["num_nodes"].numel() == state["targets"].numel() > 0


def test_soft_targets_reach_the_shards_and_are_acgkd_only(tmp_path, tiny_teacher_dir):
    hard = generate.run(resolve_config(None, FAST), RunLayout(tmp_path / "hard"), "key", teacher_dir=tiny_teacher_dir)
    cfg = resolve_config(None, [*FAST, "generate.confidence_low=0.5"])
    soft = generate.run(cfg, RunLayout(tmp_path / "soft"), "key", teacher_dir=tiny_teacher_dir)
    digests = [{k: f.sha256 for k, f in out.manifest.files.items()} for out in (hard, soft)]
    assert any(digests[0][k] != digests[1][k] for k in digests[0] if k.startswith("shards/shard-"))
    with pytest.raises(ConfigError, match="generate.confidence_low"):
        generate.run(resolve_config(None, [*FAST, "generate.confidence_low=0.5", "generate.method=gfkd"]),
                     RunLayout(tmp_path / "gfkd"), "key", teacher_dir=tiny_teacher_dir)


def test_kill_and_resume_writes_only_missing_shards_and_matches(tmp_path, tiny_teacher_dir):
    cfg = resolve_config(None, FAST)
    whole = RunLayout(tmp_path / "whole")
    ref = generate.run(cfg, whole, "key", teacher_dir=tiny_teacher_dir)
    # a run killed after two of four shards: its staging folder holds those two
    resumed = RunLayout(tmp_path / "resumed")
    staging = resumed.staging_dir("generate")
    (staging / "shards").mkdir(parents=True)
    (staging / ".cache_key").write_text("key")
    for name in ("shard-b00-c000.parquet", "_time-b00-c000.json", "_state-b00-c000.pt",
                 "shard-b01-c001.parquet", "_time-b01-c001.json", "_state-b01-c001.pt"):
        shutil.copy(whole.stage_dir("generate") / "shards" / name, staging / "shards" / name)
    (staging / "shards" / ".shard-b00-c001.parquet.tmp-123").write_bytes(b"partial")  # a half-written temp file
    out = generate.run(cfg, resumed, "key", teacher_dir=tiny_teacher_dir)
    assert out.manifest.metrics["generate/shards/written"] == 2 and out.manifest.metrics["generate/shards/resumed"] == 2
    files = {k: v.sha256 for k, v in out.manifest.files.items() if k.endswith(".parquet")}
    assert files == {k: v.sha256 for k, v in ref.manifest.files.items() if k.endswith(".parquet")}
    assert not staging.exists()


@pytest.mark.parametrize("damage", ["truncated", "no timing sidecar"])
def test_a_kept_shard_damaged_from_outside_is_made_again(tmp_path, tiny_teacher_dir, damage, caplog):
    """Shards are written atomically, so only something outside gfkd leaves a kept one unreadable (it used to end
    the resume in a Parquet traceback naming no file): it is named in a warning and made again, to the same bytes."""
    cfg = resolve_config(None, FAST)
    whole = RunLayout(tmp_path / "whole")
    ref = generate.run(cfg, whole, "key", teacher_dir=tiny_teacher_dir)
    resumed = RunLayout(tmp_path / "resumed")
    staging = resumed.staging_dir("generate")
    shutil.copytree(whole.stage_dir("generate") / "shards", staging / "shards")
    (staging / ".cache_key").write_text("key")
    damaged = staging / "shards" / "shard-b01-c000.parquet"
    if damage == "truncated":
        damaged.write_bytes(damaged.read_bytes()[:500])
    else:
        (staging / "shards" / "_time-b01-c000.json").unlink()
    out = generate.run(cfg, resumed, "key", teacher_dir=tiny_teacher_dir)
    assert out.manifest.metrics["generate/shards/written"] == 1 and out.manifest.metrics["generate/shards/resumed"] == 3
    assert f"the kept shard {damaged}" in caplog.text
    files = {k: v.sha256 for k, v in out.manifest.files.items() if k.endswith(".parquet")}
    assert files == {k: v.sha256 for k, v in ref.manifest.files.items() if k.endswith(".parquet")}


def _killed_staging(root: Path, key: str) -> RunLayout:
    """A run folder whose generate staging, left by a killed run under cache key `key`, holds one bad shard."""
    layout = RunLayout(root)
    staging = layout.staging_dir("generate")
    (staging / "shards").mkdir(parents=True)
    (staging / ".cache_key").write_text(key)
    (staging / "shards" / "shard-b00-c000.parquet").write_bytes(b"stale")
    return layout


def test_force_discards_the_staging_of_a_killed_run(tmp_path, tiny_teacher_dir):
    """`--force generate` redoes the stage: it does not resume from the killed run's shards (nor trip on them)."""
    out = generate.run(resolve_config(None, FAST), _killed_staging(tmp_path, "key"), "key", force=True,
                       teacher_dir=tiny_teacher_dir)
    assert out.manifest.metrics["generate/shards/written"] == 4 and out.manifest.metrics["generate/shards/resumed"] == 0


def test_staging_of_another_config_is_discarded(tmp_path, tiny_teacher_dir):
    out = generate.run(resolve_config(None, FAST), _killed_staging(tmp_path, "old-key"), "new-key",
                       teacher_dir=tiny_teacher_dir)
    assert out.manifest.metrics["generate/shards/written"] == 4


class _Planned(Exception):
    """Raised by the spy once the stage has planned its first bank: the test needs no generation."""


@pytest.mark.parametrize("parity,dataset,expect", [
    ("reference", "MUTAG", ("range", "uniform", (10, 29))),  # the reference code: uniform targets, n ~ U{10..29}
    ("reference", "TINY", ("empirical", "uniform", (10, 29))),  # uniform targets; node counts as configured
    ("clean", "MUTAG", ("empirical", "balanced", (10, 29))),  # the configured plan, untouched
])
def test_gfkd_reference_parity_plans_the_reference_bank(tmp_path, tiny_teacher_dir, monkeypatch, parity, dataset,
                                                        expect):
    real_load = generate.load_teacher

    def load_as(path):
        teacher, meta, bn = real_load(path)
        return teacher, {**meta, "data": {**meta["data"], "dataset": dataset}}, bn

    def spy(meta, M, seed, bank, nodes, targets, max_nodes, batch_size, node_range, confidence_low=1.0):
        seen.append((nodes, targets, tuple(node_range)))
        raise _Planned

    seen: list = []
    monkeypatch.setattr(generate, "load_teacher", load_as)
    monkeypatch.setattr(generate, "plan_bank", spy)
    cfg = resolve_config(None, [*FAST, "generate.method=gfkd", f"generate.gfkd.parity={parity}"])
    assert (cfg.generate.nodes, cfg.generate.targets) == ("empirical", "balanced")  # the defaults the rows start from
    with pytest.raises(_Planned):
        generate.run(cfg, RunLayout(tmp_path), "key", teacher_dir=tiny_teacher_dir)
    assert seen == [expect]


def test_a_worker_job_is_plain_python():
    """Tensors would cross through torch's shared-memory pickler and a Unix socket under the temp dir."""
    from gfkd.generators.bank import plan_bank
    from gfkd.stages.chunks import job

    meta = {"node_count_hist": {"5": 2, "9": 1}, "num_classes": 2}
    plan = plan_bank(meta, 10, 0, 0, batch_size=4, confidence_low=0.5)

    def leaves(v):
        if isinstance(v, (list, tuple)):
            return [x for item in v for x in leaves(item)]
        return [x for item in v.values() for x in leaves(item)] if isinstance(v, dict) else [v]

    assert all(isinstance(x, (int, float, str, type(None))) for x in leaves(job("acgkd", plan, 0, 1, 10, 6, 0, "k", Path("s"))))


def test_worker_processes_write_the_same_shards(tmp_path, tiny_teacher_dir):
    """Soft targets, so that the per-graph confidences travel to the workers too (one generator: the pool does not
    depend on it, and each such test spawns 2 processes)."""
    from gfkd.tracking import NullLogger

    class Recording(NullLogger):
        def __init__(self):
            self.steps = set()

        def metrics(self, metrics, step=None):
            if step is not None:
                self.steps |= {(step, k, v) for k, v in metrics.items()}

    base = [*FAST, "generate.confidence_low=0.5"]
    logs = [Recording(), Recording()]
    one = generate.run(resolve_config(None, base), RunLayout(tmp_path / "one"), "key", logs[0],
                       teacher_dir=tiny_teacher_dir)
    cfg = resolve_config(None, [*base, "generate.workers=2"])
    assert cfg.stage_config("generate") == resolve_config(None, base).stage_config("generate")
    two = generate.run(cfg, RunLayout(tmp_path / "two"), "key", logs[1], teacher_dir=tiny_teacher_dir)
    # each step's metrics reach the parent's logger from the worker that ran the chunk, with the same values
    assert logs[0].steps and logs[0].steps == logs[1].steps
    assert one.manifest.metrics["generate/time/workers"] == 1 and two.manifest.metrics["generate/time/workers"] == 2
    digests = [{k: f.sha256 for k, f in out.manifest.files.items() if not f.volatile} for out in (one, two)]
    assert digests[0] == digests[1] and sum(k.endswith(".parquet") for k in digests[0]) == 4
    assert two.manifest.metrics["generate/shards/written"] == 4 and two.manifest.metrics["generate/mem/worker_peak_rss_bytes"] > 0
    assert two.manifest.metrics["generate/shards/written"] == 4 and two.manifest.metrics["generate/time/this_run_wall_s"] > 0


def test_worker_error_stops_the_stage_with_its_message(tmp_path, tiny_teacher_dir):
    # the tiny teacher's set has node features: the teacher degree start is refused inside the generator, in a worker
    cfg = resolve_config(None, [*FAST, "generate.workers=2", "generate.acgkd.init_degrees=teacher"])
    with pytest.raises(StageError, match="featureless set"):
        generate.run(cfg, RunLayout(tmp_path), "key", teacher_dir=tiny_teacher_dir)
    shards = list((RunLayout(tmp_path).staging_dir("generate") / "shards").glob("shard-*.parquet"))
    assert not shards and not RunLayout(tmp_path).manifest("generate").exists()


def _children(pid: int) -> set[int]:
    """PIDs whose parent is `pid` (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _running(pids: set[int]) -> dict[int, str]:
    """The processes among `pids` that exist and have not exited (zombies excluded): pid → /proc cmdline."""
    out = {}
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            continue
        if state not in ("Z", "X"):
            out[p] = cmd
    return out


def _generate_in_a_subprocess(overrides: list[str], root: Path, teacher_dir: Path, **popen):
    """The generate stage under `overrides`, into `root`, in a new Python process (stderr piped, as text)."""
    import subprocess
    import sys

    script = (f"from pathlib import Path\nfrom gfkd.config import resolve_config\nfrom gfkd.layout import RunLayout\n"
              f"from gfkd.stages import generate\n"
              f"cfg = resolve_config(None, {overrides!r})\n"
              f"generate.run(cfg, RunLayout(Path({str(root)!r})), 'key', teacher_dir=Path({str(teacher_dir)!r}))\n")
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GFKD_RUN_SLOW") != "1" or not Path("/proc/self/stat").exists(),
                    reason="slow (GFKD_RUN_SLOW=1); reads /proc")
def test_workers_exit_when_the_stage_process_is_killed(tmp_path, tiny_teacher_dir):
    """SIGKILL gives the stage no chance to stop its pool: the workers notice their parent is gone and exit."""
    import signal
    import time

    proc = _generate_in_a_subprocess([*FAST, "generate.iterations=100000", "generate.workers=2"], tmp_path / "run",
                                     tiny_teacher_dir)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = {p for p, cmd in _running(_children(proc.pid)).items() if "spawn_main" in cmd}
    assert proc.poll() is None and len(workers) >= 2, proc.stderr.read() if proc.poll() is not None else workers
    time.sleep(20)  # past their start-up (spawn, imports, the teacher), optimising: not reading their job queue
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _running(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _running(workers)
    assert not alive, f"workers {alive} outlived the killed stage"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_run_killed_at_two_workers_resumes_at_one_to_the_same_shards(tmp_path, tiny_teacher_dir):
    """SIGKILL of a `generate.workers=2` stage once its first shard is written; the same config at one worker keeps
    the finished shards and writes the rest, to the bytes of an unkilled run (that `workers` stays out of the stage
    config, hence the cache key, is checked by test_worker_processes_write_the_same_shards)."""
    import signal
    import time

    slow = [*FAST, "generate.iterations=500", "generate.gfkd.iterations=500"]  # about a second per chunk
    layout = RunLayout(tmp_path / "run")
    proc = _generate_in_a_subprocess([*slow, "generate.workers=2"], layout.root, tiny_teacher_dir,
                                     start_new_session=True)
    shards = layout.staging_dir("generate") / "shards"
    deadline = time.monotonic() + 120
    while not list(shards.glob("shard-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read()  # still running: it did not fail before its first shard
    os.killpg(proc.pid, signal.SIGKILL)  # the stage and its workers at once, as a lost machine would
    assert proc.wait(timeout=10) == -signal.SIGKILL, proc.stderr.read()
    for sem in Path("/dev/shm").glob(f"sem.*-{proc.pid}-*"):  # the killed resource tracker's semaphores
        sem.unlink(missing_ok=True)
    kept = {p.name: p.read_bytes() for p in shards.glob("shard-*.parquet")}
    assert 1 <= len(kept) < 4 and not layout.manifest("generate").exists()

    out = generate.run(resolve_config(None, slow), layout, "key", teacher_dir=tiny_teacher_dir)
    ref = generate.run(resolve_config(None, slow), RunLayout(tmp_path / "ref"), "key", teacher_dir=tiny_teacher_dir)
    assert out.manifest.metrics["generate/shards/resumed"] == len(kept)
    assert out.manifest.metrics["generate/shards/written"] == 4 - len(kept)
    assert all((layout.stage_dir("generate") / "shards" / name).read_bytes() == data for name, data in kept.items())
    digests = [{k: f.sha256 for k, f in o.manifest.files.items() if not f.volatile} for o in (out, ref)]
    assert digests[0] == digests[1] and sum(k.endswith(".parquet") for k in digests[0]) == 4


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_that_dies_stops_the_stage_instead_of_a_hang(tmp_path, tiny_teacher_dir):
    import signal
    import threading
    import time

    def kill_a_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            spawned = [p for p, cmd in _running(_children(os.getpid())).items() if "spawn_main" in cmd]
            if spawned:
                os.kill(spawned[0], signal.SIGKILL)  # as the kernel's OOM killer would
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    cfg = resolve_config(None, [*FAST, "generate.iterations=100000", "generate.workers=2"])
    t0 = time.monotonic()
    with pytest.raises(StageError, match="a worker process died"):
        generate.run(cfg, RunLayout(tmp_path), "key", teacher_dir=tiny_teacher_dir)
    assert time.monotonic() - t0 < 120
    killer.join(timeout=5)
    left = [cmd for cmd in _running(_children(os.getpid())).values() if "spawn_main" in cmd]  # (multiprocessing's
    assert not left, "workers left running after the stage stopped"  # resource tracker lives with this process)


def test_usable_workers_one_on_cuda_and_in_daemonic_processes(monkeypatch):
    import multiprocessing
    from types import SimpleNamespace

    from gfkd.stages.chunks import usable_workers

    cpu = torch.device("cpu")
    assert usable_workers(4, 3, cpu) == 3 and usable_workers(2, 24, cpu) == 2 and usable_workers(4, 0, cpu) == 1
    assert usable_workers(4, 24, torch.device("cuda")) == 1
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))  # a Dask worker
    assert usable_workers(4, 24, cpu) == 1
