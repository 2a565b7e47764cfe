"""The benchmark flow end to end on TINY: fanned out on a Dask LocalCluster through an MLflow server, and resumed
after a failed cell without re-entering the finished one."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

TINY = ["teacher.epochs=3", "teacher.model.layers=3", "teacher.model.hidden=8", "teacher.batch_size=8",
        "data.download=false", "generate.banks=2", "generate.iterations=5", "distill.epochs=2", "distill.seeds=1",
        "distill.student.layers=2", "distill.student.hidden=8", "group.graph.warmup_epochs=1",
        "group.graph.epochs=1", "group.graph.students=2"]
STAGES = ["teacher", "generate", "distill", "group", "evaluate"]


def _spec(runs: Path, root: Path, **kw):
    from flows.benchmark import BenchmarkSpec

    return BenchmarkSpec(overrides=(*TINY, f"run.runs_dir='{runs}'", f"data.root='{root}'"), datasets=("TINY",),
                         generators=("acgkd",), splits=(0, 1), retries=0, **kw)


def _statuses(cell: Path) -> dict[str, str]:
    return {s: r["status"] for s, r in json.loads((cell / "summary.json").read_text())["stages"].items()}


@pytest.mark.e2e
def test_dask_benchmark_logs_through_a_tracking_server(tmp_path, tiny_root):
    from mlflow.tracking import MlflowClient

    from flows.benchmark import benchmark

    runs = tmp_path / "runs"
    spec = _spec(runs, tiny_root, workers=2, dask=True, dask_processes=False, out=str(tmp_path / "table.md"),
                 command="gfkd benchmark --datasets TINY")
    result = benchmark(spec)

    assert [(r["cell"], r["status"]) for r in result["cells"]] == [("tiny-acgkd-fold0", "ran"),
                                                                   ("tiny-acgkd-fold1", "ran")]
    for cell in ("tiny-acgkd-fold0", "tiny-acgkd-fold1"):
        assert list(_statuses(runs / cell).values()) == ["ran"] * len(STAGES)
        assert not (runs / cell / "mlflow.db").exists()  # logged through the server, not a SQLite file per cell
    table = (tmp_path / "table.md").read_text()
    assert table == (runs / "benchmark" / "results.md").read_text()
    assert "| method | TINY |" in table and "| teacher | " in table and "data-free student (acgkd)" in table
    # protocol.md §7's facts and §8.1's fold check, from the cells' own teacher manifests
    assert "\n- device: cpu (" in table and "\n- config hash: " in table and "\n- runtime: run.deterministic=" in table
    assert "Every cell of a dataset and split logged the same fold hash" in table
    for cell in ("tiny-acgkd-fold0", "tiny-acgkd-fold1"):  # each cell's report names the command that ran it
        assert "- command: `gfkd benchmark --datasets TINY`;" in (runs / cell / "evaluate" / "report.md").read_text()
    rows = {r["method"]: r for r in json.loads((runs / "benchmark" / "results.json").read_text())["rows"]}
    assert rows["teacher"]["n"] == 2 and rows["pseudo"]["splits"] == [0, 1]
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the server is stopped and the variable removed

    client = MlflowClient(f"sqlite:///{runs / 'benchmark' / 'mlflow.db'}")  # the server's backend
    (bench,) = client.search_runs([client.get_experiment_by_name("gfkd-benchmark").experiment_id])
    assert bench.info.status == "FINISHED" and bench.info.run_name == "benchmark"
    assert bench.data.tags["gfkd.versions"].startswith("gfkd ")  # what `gfkd --version` prints
    assert bench.data.metrics["benchmark/TINY/teacher/test/acc_mean"] == pytest.approx(rows["teacher"]["mean"])
    arts = runs / "benchmark" / "mlartifacts"  # the server's artifact store, beside its database
    assert {p.name for p in arts.rglob(f"{bench.info.run_id}/artifacts/*")} == {"results.md", "results.json"}
    pipeline_runs = client.search_runs([client.get_experiment_by_name("gfkd-TINY").experiment_id],
                                       "tags.gfkd.run LIKE 'tiny-acgkd-fold%'")
    parents = {r.info.run_name for r in pipeline_runs if "mlflow.parentRunId" not in r.data.tags}
    assert parents == {"tiny-acgkd-fold0", "tiny-acgkd-fold1"}


@pytest.mark.e2e
def test_rerun_after_a_failed_cell_runs_only_that_cell(tmp_path, tiny_root):
    from flows.benchmark import benchmark

    runs = tmp_path / "runs"
    spec = _spec(runs, tiny_root)
    busy = runs / "tiny-acgkd-fold1"
    busy.mkdir(parents=True)
    with open(busy / ".lock", "w") as fh:  # another writer holds fold 1: that cell fails, fold 0 runs
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        first = benchmark(spec)
    assert [r["status"] for r in first["cells"]] == ["ran", "failed"]
    assert "another gfkd run is writing" in first["cells"][1]["error"] and first["failed"] == ["tiny-acgkd-fold1"]
    assert "1 of 2 cells finished" in first["table"] and "(1) |" in first["table"]
    done = runs / "tiny-acgkd-fold0" / "summary.json"
    stamp = done.stat().st_mtime_ns

    second = benchmark(spec)
    assert [r["status"] for r in second["cells"]] == ["finished", "ran"]  # fold 0 is not re-entered at all
    assert done.stat().st_mtime_ns == stamp
    assert list(_statuses(busy).values()) == ["ran"] * len(STAGES)
    assert second["failed"] == [] and "2 of 2 cells finished" in second["table"] and "(2) |" in second["table"]


@pytest.mark.e2e
def test_sigterm_stops_a_benchmark_at_once_with_one_line_and_frees_its_folder(tmp_path, tiny_root):
    """A scheduler's or `timeout`'s SIGTERM to the group used to leave `gfkd benchmark` training its cells on with
    Prefect's server gone, logging connection errors every few seconds, until a SIGKILL (found by exploring the
    CLI): it now exits 143 at once, as `gfkd run` does."""
    import signal

    from conftest import signal_mid_teacher

    runs = tmp_path / "runs"
    proc, out, err, seconds = signal_mid_teacher(
        ["benchmark", "--datasets", "TINY", "--generators", "randg", "--folds", "0", *TINY, "teacher.epochs=400",
         f"run.runs_dir='{runs}'", f"--data-root={tiny_root}"], tmp_path, runs, signal.SIGTERM)
    assert seconds < 15 and proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "gfkd: stopped by SIGTERM: the finished cells and stages in" in err, err[-3000:]
    assert "run the same command again to resume" in err
    assert not (runs / "benchmark" / ".tmp").exists()  # the benchmark's scratch went with it
    assert not list(runs.glob("*/teacher/manifest.json")) and not out.strip()  # stopped mid-teacher, no table printed
    for lock in (runs / "benchmark" / ".lock", next(runs.glob("tiny-*/.lock"))):  # both locks went with it
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.parametrize("args,needle", [
    (["--generators", "acgkd,nope"], "--generators"),
    (["--folds", "8..12"], "--folds '8..12': config value protocol.fold=10 is invalid"),
    (["--datasets", "NOPE"], "NOPE"),
    (["teacher.epoch=3"], "did you mean 'teacher.epochs'"),
])
def test_bad_benchmark_input_is_one_line_and_exit_2(tmp_path, tiny_root, args, needle):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    r = subprocess.run([sys.executable, "-m", "flows.cli", "benchmark", "--datasets", "TINY", *args,
                        "data.download=false", f"run.runs_dir='{tmp_path}'", f"--data-root={tiny_root}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and needle in r.stderr, r.stderr[-2000:]
    assert len([l for l in r.stderr.splitlines() if l.startswith("gfkd: error:")]) == 1
    assert not (tmp_path / "tiny-acgkd-fold0").exists()  # nothing ran



def test_benchmark_refuses_bad_options_before_prefect_loads(tmp_path):
    """Refusing `--folds x` took 10 s while the flow module (Prefect, torch, PyG) loaded first; now it is input only."""
    import subprocess
    import sys

    code = ("import sys\nfrom flows.cli import main\nsys.argv = ['gfkd', 'benchmark', '--folds', 'x']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, sorted({m.split('.')[0] for m in sys.modules} "
            "& {'prefect', 'torch', 'mlflow'}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "2 []" and "--folds 'x' is not a list of splits" in r.stderr, (r.stdout, r.stderr)


@pytest.mark.parametrize("args,needle", [
    (["--name", "../escaped-bench"], "--name '../escaped-bench' is invalid: the benchmark folder is one folder name"),
    (["--name", "a/b"], "no '/' or '..'"),
    (["--name", "_cache"], "names starting with '_' or '.' are the tool's own folders"),  # the datasets' folder
    (["--out", "."], "is a folder: give a file"),
    (["--out", "no-such-dir/t.md"], "no-such-dir does not exist: create it or give another path"),
    (["--dask-address", "garbage"], "--dask-address 'garbage' is invalid: write the scheduler's address as tcp://"),
    (["--dask", "--dask-address", "tcp://127.0.0.1:9"], "give --dask (a local cluster) or --dask-address"),
    (["--datasets", ""], "--datasets '' is invalid: give at least one name, e.g. --datasets MUTAG"),
    (["--generators", " , "], "--generators ' , ' is invalid: give at least one name"),
    # the option is named as the protocol calls its splits (it used to say --seeds), and no folder is made first
    (["--folds", "x"], "--folds 'x' is not a list of splits"),
    (["--splits", "0..12"], "--folds '0..12': config value protocol.fold=10 is invalid"),
    (["--datasets", "NOPE"], "NOPE"),
    # a name given twice would run its cells twice, two writers on one folder
    (["--generators", "deepinv,deepinvg"], "--generators 'deepinv,deepinvg' is invalid: deepinvg repeats deepinv"),
    (["--datasets", "TINY,tiny"], "tiny repeats TINY: give each once"),
    (["--folds", "0,0"], "--folds '0,0' is invalid: 0 repeats 0"),
    # a key the grid sets per cell: the override used to be dropped without a word (found by exploring the CLI)
    (["data.dataset='MUTAG'"], "gfkd benchmark sets data.dataset per cell from --datasets: drop the data.dataset=..."),
    (["generate.method=gfkd"], "sets generate.method per cell from --generators"),
    (["data.dataset = 'MUTAG'"], "sets data.dataset per cell from --datasets"),  # spaced, as the config reads it
    (["protocol.fold=3"], "sets protocol.fold per cell from --folds"),
    (["protocol.name=holdout", "protocol.seed=3"], "sets protocol.seed per cell from --seeds"),
    (["run.name='x'"], "names each cell <dataset>-<generator>-<split> (--name names the benchmark folder)"),
])
def test_benchmark_options_are_checked_before_anything_runs(tmp_path, tiny_root, monkeypatch, args, needle):
    """Found by exploring the CLI: these used to start training (or write outside run.runs_dir) and fail late."""
    from typer.testing import CliRunner

    import flows.benchmark
    from flows.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(flows.benchmark, "benchmark", lambda spec: pytest.fail("the benchmark started"))
    r = CliRunner().invoke(app, ["benchmark", "--datasets", "TINY", "--generators", "randg", "--folds", "0", *args,
                                 "data.download=false", f"run.runs_dir='{tmp_path / 'runs'}'",
                                 f"--data-root={tiny_root}"])
    assert r.exit_code == 2 and needle in r.output, r.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escaped-bench").exists()


def test_a_benchmark_ends_a_killed_earlier_benchmarks_runs_and_refuses_a_second_writer(tmp_path, tiny_root,
                                                                                       monkeypatch):
    """A SIGKILLed benchmark leaves its parent MLflow run RUNNING in <runs_dir>/<name>/mlflow.db: the next benchmark
    in that folder (which holds the folder's lock, so no live one can share it) ends it as KILLED; a benchmark that
    finds the lock held refuses, naming --name. The grid is stubbed: only the flow's own bookkeeping runs."""
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    import flows.benchmark
    from gfkd.errors import GfkdError
    from gfkd.layout import RunLayout
    from gfkd.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs = tmp_path / "runs"
    folder = runs / "benchmark"
    folder.mkdir(parents=True)
    dead = Tracker(RunLayout(folder), flows.benchmark.EXPERIMENT).start_run("benchmark").run_id  # never ended
    stub = lambda cells, retries, uri: [{"cell": c.name, "status": "failed", "error": "stub", "stages": {}}  # noqa: E731
                                        for c in cells]
    monkeypatch.setattr(flows.benchmark, "run_grid", SimpleNamespace(with_options=lambda **kw: stub))
    spec = _spec(runs, tiny_root)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(GfkdError, match="another gfkd run is writing to .*choose another --name"):
            flows.benchmark.benchmark(spec)
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    assert client.get_run(dead).info.status == "RUNNING"  # the refused benchmark touched nothing
    result = flows.benchmark.benchmark(spec)
    assert result["failed"] == ["tiny-acgkd-fold0", "tiny-acgkd-fold1"]
    old = client.get_run(dead)
    assert old.info.status == "KILLED" and "process had died" in old.data.tags["gfkd.ended_by"]
    statuses = {r.info.run_id: r.info.status for r in client.search_runs(
        [client.get_experiment_by_name(flows.benchmark.EXPERIMENT).experiment_id])}
    assert statuses.pop(dead) == "KILLED" and list(statuses.values()) == ["FAILED"]  # this benchmark's own run


def test_benchmark_leaves_the_system_temp_dir_empty(tmp_path, tiny_root):
    """The flow's imports (torch, PyG) write into the temp dir (torch's inductor cache folder): they come after the
    benchmark's scratch folder takes over, so the user's TMPDIR stays empty (found by a user audit: an empty
    torchinductor_<user> was left there). The flow itself is stubbed: this is about the command's imports."""
    import subprocess
    import sys

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    code = (
        "import importlib.abc, sys\n"
        "class Stub(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name != 'flows.benchmark':\n"
        "            return None\n"
        "        sys.meta_path.remove(self)\n"
        "        import importlib.util\n"
        "        spec = importlib.util.find_spec(name)\n"
        "        real_exec = spec.loader.exec_module\n"
        "        def exec_module(module):\n"
        "            real_exec(module)\n"
        "            module.benchmark = lambda spec: {'cells': [], 'table': '', 'failed': [], 'folder': 'x'}\n"
        "        spec.loader.exec_module = exec_module\n"
        "        return spec\n"
        "sys.meta_path.insert(0, Stub())\n"
        "from flows.cli import main\n"
        f"sys.argv = ['gfkd', 'benchmark', '--datasets', 'TINY', '--generators', 'randg', '--folds', '0', "
        f"'data.download=false', \"run.runs_dir='{tmp_path / 'runs'}'\", '--data-root={tiny_root}']\n"
        "main()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env | {"TMPDIR": str(system_tmp)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "x", r.stderr[-2000:]
    assert not list(system_tmp.iterdir()), sorted(p.name for p in system_tmp.iterdir())


def test_a_config_files_cell_keys_are_named_as_unused(tmp_path, tiny_root, monkeypatch):
    """As overrides of data.dataset, generate.method, the split or run.name are refused, a file's are said to give way
    (a user audit: the file's run.name was dropped without a word). The flow is stubbed."""
    from typer.testing import CliRunner

    import flows.benchmark
    from flows.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text('[run]\nname = "mine"\n[data]\ndataset = "TINY"\n[teacher]\nepochs = 2\n')
    monkeypatch.setattr(flows.benchmark, "benchmark", lambda spec: {"cells": [], "table": "", "failed": [],
                                                                    "folder": "x"})
    args = ["benchmark", "--datasets", "TINY", "--generators", "randg", "--folds", "0", "data.download=false",
            f"run.runs_dir='{tmp_path / 'runs'}'", f"--data-root={tiny_root}"]
    r = CliRunner().invoke(app, [*args[:1], "c.toml", *args[1:]])
    assert r.exit_code == 0, r.output
    assert ("gfkd: note: c.toml sets data.dataset, run.name, which gfkd benchmark sets per cell (--datasets, "
            "--generators, --folds; cell folders <dataset>-<generator>-<split>): the file's values are not used") \
        in r.output
    (tmp_path / "d.toml").write_text("[teacher]\nepochs = 2\n")
    r = CliRunner().invoke(app, [*args[:1], "d.toml", *args[1:]])
    assert r.exit_code == 0 and "note" not in r.output, r.output
