"""Kill-and-resume harness: run the stages in a subprocess, SIGKILL it at a chosen point, rerun, check.

Two ways to run the pipeline:
- the stage driver (`python kill_harness.py DRIVE_ARGS`): every stage's `run` in order, as the pipeline calls it
  (same cache keys, same inputs) but without Prefect's server, so a trial costs seconds; it appends what it does to
  a progress file (`start <stage>`, `resume <stage> <epoch>`, `step <stage|stage:student> <epoch>`,
  `done <stage> <status>`, each line ending in `t=<unix time>`) and writes `<run>/driver.json` (each stage's status) at the end;
- the CLI (`python -m flows.cli run ...`), watched from outside through staging files and MLflow's metric rows.

A kill point is a predicate over what can be seen from outside (progress lines, staging files, MLflow rows). After
each kill the harness checks that nothing of a finished stage changed and that the killed stage was not published;
after the final rerun, that each stage finished, that the stages finished before the kill were cached (not redone),
that no half-written file was published and that models, shards and metrics equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
STAGES = ("teacher", "generate", "distill", "group", "evaluate")
RUN_NAME = "tiny-cv10-fold0"
# tiny but long enough per stage (seconds) that a kill lands inside it
ARGS = ["data.dataset=TINY", "data.download=false", "teacher.epochs=60", "teacher.model.layers=3",
        "teacher.model.hidden=16", "teacher.batch_size=8", "run.checkpoint_every=5",
        "generate.banks=3", "generate.iterations=120", "generate.num_graphs=40", "generate.batch_size=20",
        "distill.epochs=8", "distill.seeds=2", "distill.student.layers=2", "distill.student.hidden=8",
        "group.graph.warmup_epochs=2", "group.graph.epochs=24", "group.graph.students=2"]
VOLATILE = ("/time/", "/mem/", "wall_s", "stage_s", "/shards/written", "/shards/resumed")  # not results
LOG = os.environ.get("GFKD_RELIABILITY_LOG")  # JSON lines of every trial, for benchmarks/reliability.py


# ---------------------------------------------------------------------------------------------------- the driver
def _note(progress: Path, line: str) -> None:
    with open(progress, "a") as fh:
        fh.write(f"{line} t={time.time():.3f}\n")


def drive(runs: Path, data_root: Path, progress: Path, overrides: list[str]) -> None:
    """Run every stage in pipeline order without Prefect; record progress and the stage statuses."""
    import torch

    from gfkd.config import resolve_config
    from gfkd.io.atomic import write_json
    from gfkd.layout import RunLayout
    from gfkd.stages import distill, evaluate, generate, group, teacher
    from gfkd.tracking import NullLogger
    from tasks.cache import stage_key

    class ProgressLogger(NullLogger):
        def __init__(self, name: str):
            self.name, self.last = name, None

        def metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            if step is not None and step != self.last:
                self.last = step
                _note(progress, f"step {self.name} {step}")

        def child(self, name: str, tags: dict[str, str] | None = None) -> "ProgressLogger":
            return ProgressLogger(f"{self.name}:{name}")

    cfg = resolve_config(None, [*overrides, f"run.runs_dir='{runs}'", f"data.root='{data_root}'"])
    layout = RunLayout(runs / cfg.run_name)
    layout.root.mkdir(parents=True, exist_ok=True)
    modules = {"teacher": teacher, "generate": generate, "distill": distill, "group": group, "evaluate": evaluate}
    dirs = {s: layout.stage_dir(s) for s in STAGES}
    inputs = {"teacher": {}, "generate": {"teacher_dir": dirs["teacher"]},
              "distill": {"teacher_dir": dirs["teacher"], "generate_dir": dirs["generate"]},
              "group": {"teacher_dir": dirs["teacher"], "generate_dir": dirs["generate"]},
              "evaluate": {"stage_dirs": {s: dirs[s] for s in STAGES[:4]}}}
    statuses, upstream = {}, ()
    for stage in STAGES:
        key = stage_key(cfg, stage, upstream)
        _note(progress, f"start {stage}")
        state = layout.staging_dir(stage) / "_train.pt"
        keyfile = layout.staging_dir(stage) / ".cache_key"
        if state.is_file() and keyfile.is_file() and keyfile.read_text() == key:
            epoch = torch.load(state, weights_only=True)["epoch"]
            _note(progress, f"resume {stage} {epoch}")
        out = modules[stage].run(cfg, layout, key, ProgressLogger(stage), False, **inputs[stage])
        statuses[stage] = out.status
        _note(progress, f"done {stage} {out.status}")
        upstream = (*upstream, out.manifest.digest)
    write_json(layout.root / "driver.json", statuses)


# --------------------------------------------------------------------------------------------------- processes
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    return env | {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1",
                  "PYTHONPATH": str(REPO)}


def start(mode: str, runs: Path, data_root: Path, progress: Path, args: list[str] = ARGS) -> subprocess.Popen:
    """Start the driver (`mode="driver"`) or the CLI (`"cli"`) on the tiny data, in its own process group."""
    if mode == "driver":
        cmd = [sys.executable, __file__, str(runs), str(data_root), str(progress), *args]
    else:
        cmd = [sys.executable, "-m", "flows.cli", "run", *args, f"run.runs_dir='{runs}'", f"--data-root={data_root}"]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> None:
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"run failed with exit code {proc.returncode}: {err[-3000:]}")


# ---------------------------------------------------------------------------------------------- what is visible
@dataclass
class View:
    """What the harness sees of a running pipeline from outside."""

    run_dir: Path
    progress: Path

    def lines(self) -> list[str]:
        return self.progress.read_text().splitlines() if self.progress.is_file() else []

    def started(self, stage: str) -> bool:
        return any(l.startswith(f"start {stage} ") for l in self.lines())

    def epochs(self, name: str) -> int:
        """How many epoch records `name` (a stage, or `distill:<student>`) has logged in this process."""
        return sum(1 for l in self.lines() if l.startswith(f"step {name} "))

    def staged(self, stage: str, pattern: str) -> int:
        return len(list((self.run_dir / f".{stage}.partial").glob(pattern)))

    def published(self, stage: str) -> bool:
        return (self.run_dir / stage / "manifest.json").is_file()

    def mlflow_steps(self, key: str) -> int:
        """Rows of metric `key` in the run's mlflow.db (the CLI's stages log there, in batches)."""
        db = self.run_dir / "mlflow.db"
        if not db.is_file():
            return 0
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                return int(con.execute("select count(*) from metrics where key = ?", (key,)).fetchone()[0])
        except sqlite3.Error:
            return 0


@dataclass
class KillPoint:
    """Kill once `ready(view)` holds (after `delay` s more); `stage` is the stage the kill is meant to land in."""

    name: str
    stage: str
    ready: Callable[[View], bool]
    delay: float = 0.0
    resumes: bool = False  # the stage must resume from a saved training state (teacher, group)


@dataclass
class Trial:
    point: str
    stage: str
    mode: str
    landed_in: str | None = None  # the stage running when the kill arrived (first unpublished one)
    checkpoint_epoch: int | None = None  # training state present in the staging folder at the kill
    resumed_from: int | None = None
    outcome: str = "pending"
    checks: list[str] = field(default_factory=list)


def _files(stage_dir: Path) -> dict[str, tuple[int, str]]:
    """Every published file of a stage: (mtime_ns, sha256 from the manifest)."""
    m = json.loads((stage_dir / "manifest.json").read_text())
    out = {name: (os.stat(stage_dir / name).st_mtime_ns, e["sha256"]) for name, e in m["files"].items()}
    out["manifest.json"] = (os.stat(stage_dir / "manifest.json").st_mtime_ns, "")
    return out


def kill_at(proc: subprocess.Popen, view: View, point: KillPoint, timeout: float = 600) -> Trial | None:
    """Wait for `point`, SIGKILL the process group; None when the run finished first (no kill happened)."""
    deadline = time.time() + timeout
    while not point.ready(view):
        if proc.poll() is not None:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise AssertionError(f"run failed before {point.name}: {err[-3000:]}")
            return None
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{point.name}: kill point not reached in {timeout} s")
        time.sleep(0.02)
    time.sleep(point.delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    landed = next((s for s in STAGES if not view.published(s)), None)
    trial = Trial(point.name, point.stage, "")
    trial.landed_in = landed
    state = view.run_dir / f".{point.stage}.partial" / "_train.pt"
    if state.is_file():
        import torch

        trial.checkpoint_epoch = int(torch.load(state, weights_only=True)["epoch"])
    return trial


def check_rerun(trial: Trial, view: View, before: dict[str, dict]) -> None:
    """What the run after `trial`'s kill did (it may itself have been killed later, in a chain): the stages finished
    before the kill untouched and cached, the killed stage finished, resumed from its last training state."""
    assert view.published(trial.landed_in), f"{trial.point}: {trial.landed_in} not finished by the rerun"
    for stage, files in before.items():
        assert _files(view.run_dir / stage) == files, f"{trial.point}: finished stage {stage} was rewritten"
    trial.checks.append(f"{len(before)} finished stage(s) unchanged (manifest mtime and checksums)")
    lines = view.lines()
    done = dict(l.split()[1:3] for l in lines if l.startswith("done "))
    if lines:  # the driver's progress; the CLI's statuses are checked in summary.json by the caller
        for stage in before:
            assert done.get(stage) == "cached", f"{trial.point}: {stage} was redone ({done.get(stage)})"
        assert done.get(trial.landed_in) == "ran", f"{trial.point}: {trial.landed_in} did not run"
        trial.checks.append("finished stages cached, killed stage ran")
        resumed = [l.split() for l in lines if l.startswith(f"resume {trial.stage} ")]
        trial.resumed_from = int(resumed[0][2]) if resumed else None
        if trial.checkpoint_epoch is not None:
            assert trial.resumed_from == trial.checkpoint_epoch, \
                f"{trial.point}: resumed from {trial.resumed_from}, last checkpoint {trial.checkpoint_epoch}"
            trial.checks.append(f"resumed after epoch {trial.resumed_from}, not from zero")
    for stage in STAGES:
        if view.published(stage):
            bad = [p.name for p in (view.run_dir / stage).rglob("*")
                   if ".tmp-" in p.name or p.name in ("_train.pt", ".cache_key")]
            assert not bad, f"{trial.point}: {stage} published temporary files {bad}"
    trial.checks.append("no temporary or partial file published")


def results(run_dir: Path) -> dict[str, dict]:
    """Per stage: checksums of the models and shards, and the metrics that are results (not timings)."""
    out = {}
    for stage in STAGES:
        m = json.loads((run_dir / stage / "manifest.json").read_text())
        out[stage] = {"files": {k: v["sha256"] for k, v in m["files"].items() if k.endswith((".pt", ".parquet"))
                                and "/_state-" not in k},
                      "metrics": {k: v for k, v in m["metrics"].items() if not any(s in k for s in VOLATILE)}}
    return out


def record(trial: Trial) -> None:
    if LOG:
        with open(LOG, "a") as fh:
            fh.write(json.dumps({"kind": "kill", **trial.__dict__}) + "\n")


def run_chain(mode: str, points: list[KillPoint], work: Path, data_root: Path, reference: dict) -> list[Trial]:
    """Kill one run at each point in turn (each rerun is the next kill's run), then finish and compare with the
    uninterrupted run's `reference` (see `results`)."""
    runs = work / "runs"
    run_dir = runs / RUN_NAME
    trials: list[tuple[Trial, dict]] = []
    for i, point in enumerate([*points, None]):
        view = View(run_dir, work / f"progress-{i}.txt")
        before = {s: _files(run_dir / s) for s in STAGES if view.published(s)}
        proc = start(mode, runs, data_root, view.progress)
        if point is None:
            finish(proc)
        else:
            trial = kill_at(proc, view, point)
            assert trial is not None, f"{point.name}: the run finished before the kill point"
            trial.mode = mode
            assert trial.landed_in == point.stage, f"{point.name}: the kill landed in {trial.landed_in}"
            for stage, files in before.items():
                assert _files(run_dir / stage) == files, f"{point.name}: the kill changed finished stage {stage}"
            assert not view.published(point.stage), f"{point.name}: {point.stage} published despite the kill"
            if point.resumes:
                assert trial.checkpoint_epoch is not None, f"{point.name}: no training state saved before the kill"
        if trials:  # this run followed the previous kill
            check_rerun(trials[-1][0], view, trials[-1][1])
        if point is not None:
            trials.append((trial, before))
    if mode == "cli":
        summary = json.loads((run_dir / "summary.json").read_text())["stages"]
        assert all(summary[s]["status"] in ("ran", "cached") for s in STAGES), summary
    got = results(run_dir)
    for stage in STAGES:
        assert got[stage] == reference[stage], f"{mode} chain: {stage} differs from the uninterrupted run"
    for t, _ in trials:
        t.checks.append("final models, shards and metrics equal the uninterrupted run's")
        t.outcome = "pass"
        record(t)
    return [t for t, _ in trials]


def reference_run(mode: str, work: Path, data_root: Path) -> dict:
    """An uninterrupted run's results."""
    runs = work / "runs"
    finish(start(mode, runs, data_root, work / "progress.txt"))
    return results(runs / RUN_NAME)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    drive(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
