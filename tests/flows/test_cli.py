"""The `gfkd` command line end to end, as a user runs it: a subprocess with Prefect and MLflow in temp folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["data.dataset=TINY", "teacher.epochs=3", "teacher.model.layers=3", "teacher.model.hidden=8",
        "teacher.batch_size=8", "data.download=false", "generate.banks=2", "generate.iterations=5",
        "distill.epochs=2", "distill.seeds=1", "distill.student.layers=2", "distill.student.hidden=8",
        "group.graph.warmup_epochs=1", "group.graph.epochs=1", "group.graph.students=2"]


# Loaded by every Python process of the command (PYTHONPATH): tests/network_guard.py, recording into GFKD_NETWORK_LOG,
# so Prefect's server, MLflow and the stages are all watched.
_GUARD = """
import os
from network_guard import install
def _log(address):
    with open(os.environ["GFKD_NETWORK_LOG"], "a") as f:
        f.write(f"{os.getpid()} {address}\\n")
install(_log)
"""


def gfkd(*args: str, cwd: Path, timeout: float = 300, tmpdir: Path | None = None,
         network_log: Path | None = None, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING", "MPLCONFIGDIR"))}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env |= {"TMPDIR": str(tmpdir)} if tmpdir else {}
    env |= {"HOME": str(home)} if home else {}
    if network_log is not None:
        guard = network_log.parent / "network-guard"
        guard.mkdir(exist_ok=True)
        (guard / "sitecustomize.py").write_text(_GUARD)
        shutil.copy(Path(__file__).parents[1] / "network_guard.py", guard / "network_guard.py")
        env |= {"PYTHONPATH": os.pathsep.join(filter(None, [str(guard), env.get("PYTHONPATH")])),
                "GFKD_NETWORK_LOG": str(network_log)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args,needle", [
    (["teacher.epoch=3"], "did you mean 'teacher.epochs'"),
    (["teacher.epochs=zero"], "teacher.epochs"),
    (["nonsense"], "neither a .toml"),
    (["a.toml", "b.toml"], "two config files, 'a.toml' and 'b.toml': pass one"),
    (["missing.toml"], "missing.toml"),
    (["--force", "generat"], "unknown stage"),
    (["--until", "distil"], "--until distil: unknown stage"),
    (["--force", "distill", "--until", "generate"], "--force distill comes after --until generate"),
    (["data.dataset=NOPE", "data.download=false"], "NOPE"),
    (["data.dataset=tiny", "data.download=false"], "did you mean 'TINY'?"),
    (["data.dataset=Cora"], "gfkd group --dataset Cora"),  # a node set: no download attempt, no TU parse
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, tiny_root, args, needle):
    r = gfkd("run", *args, f"--data-root={tiny_root}", f"run.runs_dir='{tmp_path}'", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and needle in r.stderr
    assert len([l for l in r.stderr.splitlines() if l.startswith("gfkd: error:")]) == 1
    assert not list(tmp_path.glob("*/.lock")), "a refused run leaves no run folder behind"


def test_a_data_cache_dir_that_is_a_file_is_named_before_anything_runs(tmp_path, tiny_root):
    from flows.cli import _check_data
    from gfkd.config import resolve_config
    from gfkd.errors import ConfigError

    (tmp_path / "afile").write_text("")
    cfg = resolve_config(None, ["data.dataset=TINY", f"data.root='{tiny_root}'", f"data.cache_dir='{tmp_path / 'afile'}'"])
    with pytest.raises(ConfigError, match="data.cache_dir '.*afile' is a file: set data.cache_dir to a folder"):
        _check_data(cfg)  # it used to fail in the teacher stage, after Prefect, blaming the dataset's raw files


def test_a_data_root_that_is_not_a_folder_is_named_even_when_the_cache_has_the_data(tmp_path, tiny_root):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_root / "TINY", runs / "_cache" / "datasets" / "TINY")  # as an earlier run leaves it
    r = gfkd("run", "data.dataset=TINY", "data.download=false", f"run.runs_dir='{runs}'",
             f"--data-root={tmp_path / 'typo'}", cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and f"data root {tmp_path / 'typo'} from data.root (or --data-root) is not a folder" in r.stderr


def test_gfkd_config_refuses_the_data_root_gfkd_run_refuses(tmp_path, tiny_root, monkeypatch):
    """`gfkd config --data-root DIR` shows what `gfkd run --data-root DIR` would use: it printed a config for a root
    that `gfkd run` refuses, with exit 0 (found by exploring the CLI)."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.delenv("GFKD_DATA_ROOT", raising=False)
    r = CliRunner().invoke(app, ["config", f"--data-root={tmp_path / 'typo'}"])
    assert r.exit_code == 2
    assert f"data root {tmp_path / 'typo'} from data.root (or --data-root) is not a folder" in r.output
    monkeypatch.setenv("GFKD_DATA_ROOT", str(tmp_path / "typo"))
    assert CliRunner().invoke(app, ["config"]).exit_code == 2
    ok = CliRunner().invoke(app, ["config", f"--data-root={tiny_root}"])
    assert ok.exit_code == 0 and json.loads(ok.output)["data"]["root"] == str(tiny_root)


def test_an_unwritable_cache_dir_is_one_line_before_any_stage(tmp_path, tiny_root):
    (tmp_path / "a-file").write_text("")
    r = gfkd("run", *TINY, f"run.runs_dir='{tmp_path / 'runs'}'", f"data.cache_dir='{tmp_path / 'a-file' / 'cache'}'",
             f"--data-root={tiny_root}", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "a-file is a file, not a folder: remove it or set data.cache_dir elsewhere" in r.stderr
    assert "Traceback" not in r.stderr and not list((tmp_path / "runs").glob("*/teacher")), r.stderr


def test_a_path_with_quotes_reaches_the_config_as_written(tmp_path):
    from flows.cli import _load

    odd = tmp_path / "it's \"q\" \\ é \x7f"
    assert _load([], odd).data.root == odd  # --data-root used to be pasted into '...' and break on a quote


def test_a_run_folder_of_other_settings_is_noted(tmp_path, capsys):
    from flows.cli import _note_other_settings
    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout

    layout = RunLayout(tmp_path)
    _note_other_settings(layout, resolve_config(None, []))  # a new folder: nothing to say
    layout.config.write_text(json.dumps(resolve_config(None, []).model_dump(mode="json")))
    _note_other_settings(layout, resolve_config(None, []))  # the same settings: nothing to say
    assert capsys.readouterr().err == ""
    _note_other_settings(layout, resolve_config(None, ["data.root='/elsewhere'", "run.checkpoint_every=2"]))
    assert capsys.readouterr().err == ""  # keys in no stage's cache key rerun nothing
    _note_other_settings(layout, resolve_config(None, ["generate.method=gfkd"]))
    err = capsys.readouterr().err
    assert 'generate.method: "acgkd" → "gfkd"' in err and "pass run.name=NAME to keep both" in err
    assert "generate and the stages after it run again" in err
    _note_other_settings(layout, resolve_config(None, ["generate.method=gfkd", "data.root='/elsewhere'"]))
    err = capsys.readouterr().err  # the keys listed are those that reach a stage: data.root took one of 3 slots
    assert 'generate.method: "acgkd" → "gfkd"' in err and "data.root" not in err and "more" not in err


def test_an_unreachable_prefect_api_is_one_line_and_exit_2(tmp_path, tiny_root, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # the discard port: nothing listens
    for cmd in (["run", "data.dataset=TINY"], ["benchmark", "--datasets", "TINY", "--generators", "acgkd", "--folds",
                                                "0"]):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        r = subprocess.run([sys.executable, "-m", "flows.cli", *cmd, f"--data-root={tiny_root}",
                            "data.download=false", f"run.runs_dir='{tmp_path}'"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "Prefect API http://127.0.0.1:9/api is unreachable" in r.stderr and "unset PREFECT_API_URL" in r.stderr
        assert len([l for l in r.stderr.splitlines() if l.startswith("gfkd: error:")]) == 1


def test_the_benchmark_table_goes_to_out_only_when_asked(tmp_path, tiny_root, monkeypatch):
    """Without --out the table stays in the benchmark folder (a run from the repo must not rewrite docs/)."""
    from typer.testing import CliRunner

    import flows.benchmark
    from flows.cli import app

    seen = []
    monkeypatch.setattr(flows.benchmark, "benchmark", lambda spec: seen.append(spec) or
                        {"cells": [], "table": "", "failed": [], "folder": "x"})
    base = ["benchmark", "--datasets", "TINY", "--generators", "acgkd", "--folds", "0", f"--data-root={tiny_root}",
            "data.download=false", f"run.runs_dir='{tmp_path}'"]
    assert CliRunner().invoke(app, base).exit_code == 0
    assert CliRunner().invoke(app, [*base, "--out", str(tmp_path / "t.md")]).exit_code == 0
    assert [s.out for s in seen] == [None, str(tmp_path / "t.md")]


@pytest.mark.parametrize("args,needle", [
    (["config", "teacher.epochs=3", "--bogus"], "No such option: --bogus"),
    (["ui", "--port", "abc"], "Invalid value for '--port'"),
    (["ui", "--port", "70000"], "Input should be less than or equal to 65535"),  # was an OverflowError's traceback
    (["nosuchcmd"], "No such command 'nosuchcmd'"),
    # click gives a missing value no context: the hint used to point at `gfkd --help`
    (["benchmark", "--datasets"], "Option '--datasets' requires an argument (see `gfkd benchmark --help`)"),
    (["ui", "--port"], "(see `gfkd ui --help`)"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, args, needle):
    """click's own errors (unknown option or command, an option's bad value) read like every other bad input."""
    r = gfkd(*args, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr.splitlines() == [r.stderr.strip()], r.stderr
    assert r.stderr.startswith("gfkd: error: ") and needle in r.stderr and "--help`" in r.stderr


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """`gfkd config | head -1`: the closed pipe ends the command with exit code 1 and nothing on stderr (it used to
    print a BrokenPipeError's traceback, then a second one from the error handler itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "config"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the command has written a byte: it starts in seconds
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1 and err == "", err


@pytest.mark.parametrize("command", [[], ["run"], ["group"], ["config"], ["ui"], ["benchmark"], ["serve"]])
def test_help_shows_no_value_for_a_flag(command):
    """Typer 0.29 printed `--dask <bool>` and `--help <bool>`, as if a flag took a value."""
    from typer.testing import CliRunner

    from flows.cli import app

    r = CliRunner().invoke(app, [*command, "--help"], terminal_width=120)
    assert r.exit_code == 0 and "--help" in r.output and "<bool>" not in r.output, r.output
    if command in (["benchmark"], ["serve"]):
        assert "--dask" in r.output and "<int>" in r.output  # other options still show their type
    short = CliRunner().invoke(app, [*command, "-h"], terminal_width=120)  # "No such option: -h" before
    assert short.exit_code == 0 and short.output == r.output


def test_group_help_names_the_defaults_and_refuses_pipeline_keys(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    out = " ".join(CliRunner().invoke(app, ["group", "--help"]).output.replace("│", " ").split())
    assert "(group.backbone; default: gcn)" in out and "(group.method; default: oad)" in out
    r = gfkd("group", "teacher.epochs=3", "group.epochs=2", cwd=tmp_path, timeout=60)  # was accepted silently
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "gfkd: error: teacher.epochs is a pipeline key, unused by `gfkd group` on a citation graph (it reads group.*, "
        "data.* and run.*): drop the override, or run it with `gfkd run`"], r.stderr
    assert not list(tmp_path.iterdir())


def test_config_command_prints_resolved_config(tmp_path):
    r = gfkd("config", "teacher.epochs=9", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["teacher"]["epochs"] == 9


@pytest.mark.e2e
def test_run_then_rerun_is_cached_and_tracked(tmp_path, tiny_root):
    runs = tmp_path / "runs"
    args = ["run", *TINY, f"run.runs_dir='{runs}'", f"--data-root={tiny_root}"]
    system_tmp = tmp_path / "system-tmp"  # the TMPDIR a user's shell would give: the run must leave it empty
    system_tmp.mkdir()
    network_log = tmp_path / "network.log"
    home = tmp_path / "home"  # the user's home: the run must leave it empty too (matplotlib wrote its caches there)
    home.mkdir()
    first = gfkd(*args, cwd=tmp_path, tmpdir=system_tmp, network_log=network_log, home=home)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not list(home.iterdir()), sorted(str(p) for p in home.rglob("*"))
    assert (runs / "_cache" / "matplotlib").is_dir()
    assert not network_log.exists(), network_log.read_text()  # Prefect, MLflow and every stage stay on the loopback
    assert not list(system_tmp.iterdir()), sorted(p.name for p in system_tmp.iterdir())
    assert not (runs / "tiny-cv10-fold0" / ".tmp").exists()  # the run's own scratch is gone too
    run_dir = Path(first.stdout.strip().splitlines()[-1])
    assert run_dir == (runs / "tiny-cv10-fold0").resolve() or run_dir.resolve() == (runs / "tiny-cv10-fold0").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    rec = summary["stages"]["teacher"]
    assert rec["status"] == "ran" and 0 <= rec["metrics"]["teacher/test/acc"] <= 1 and rec["mlflow_run_id"]
    assert json.loads((run_dir / "config.json").read_text())["teacher"]["epochs"] == 3
    assert (run_dir / "prefect").is_dir() and not list(tmp_path.glob("mlruns"))  # everything inside the run

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("gfkd-TINY")
    stage_run = client.get_run(rec["mlflow_run_id"])
    parent_id = stage_run.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent_id).data.tags["prefect.flow_run_id"]
    assert client.get_run(parent_id).data.tags["gfkd.versions"].startswith("gfkd ")  # what `gfkd --version` prints
    assert len(client.get_metric_history(stage_run.info.run_id, "teacher/train/loss")) == 3
    arts = {a.path for a in client.list_artifacts(stage_run.info.run_id, "teacher")}
    assert {"teacher/teacher.pt", "teacher/teacher.json", "teacher/curve.png"} <= arts
    logged = Path(client.download_artifacts(stage_run.info.run_id, "teacher/curve.png", str(tmp_path)))
    assert logged.read_bytes() == (run_dir / "teacher" / "curve.png").read_bytes()  # not re-rendered at MLflow's dpi
    assert exp.artifact_location.startswith((run_dir.resolve()).as_uri())

    gen = summary["stages"]["generate"]
    assert gen["status"] == "ran" and gen["metrics"]["generate/quality/num_graphs"] == 2 * 32
    gen_run = client.get_run(gen["mlflow_run_id"])
    assert gen_run.data.tags["mlflow.parentRunId"] == parent_id
    assert client.get_metric_history(gen_run.info.run_id, "generate/train/ce")

    for stage in ("distill", "group"):
        rec_s = summary["stages"][stage]
        assert rec_s["status"] == "ran" and client.get_run(rec_s["mlflow_run_id"]).data.tags["mlflow.parentRunId"] == parent_id
    assert 0 <= summary["stages"]["distill"]["metrics"]["distill/test/acc_kd_real"] <= 1
    assert "group/test/acc_ensemble" in summary["stages"]["group"]["metrics"]
    group_arts = {a.path for a in client.list_artifacts(summary["stages"]["group"]["mlflow_run_id"], "group")}
    assert {"group/curves.png", "group/results.json"} <= group_arts, group_arts
    progress = [line for line in first.stderr.splitlines() if line.startswith("gfkd: tiny-cv10-fold0: stage ")]
    stages = ("teacher", "generate", "distill", "group", "evaluate")
    assert [line.split(" in ")[0] for line in progress] == [  # each stage says so as it starts and ends, in order
        f"gfkd: tiny-cv10-fold0: stage {i}/5 {s}{end}" for i, s in enumerate(stages, 1) for end in (" ...", " ran")]
    group_line = next(line for line in first.stderr.splitlines() if line.lstrip().startswith("group: ran"))
    assert "group/test/acc_mean=" in group_line and "group/test/acc_ensemble=" in group_line, group_line
    ev = summary["stages"]["evaluate"]
    assert ev["status"] == "ran" and "evaluate/test/acc_teacher" in ev["metrics"]
    assert "- command: `gfkd run data.dataset=TINY " in (run_dir / "evaluate" / "report.md").read_text()

    db = run_dir / "prefect" / "prefect.db"  # damaged (Prefect's server restarted for 2 min in tracebacks on it)
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 3)
    second = gfkd(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"gfkd: note: Prefect's database {db} was damaged" in second.stderr and "Traceback" not in second.stderr
    assert (run_dir / "prefect" / "prefect.db.damaged").is_file()
    stages2 = json.loads((run_dir / "summary.json").read_text())["stages"]
    rec2 = stages2["teacher"]
    assert rec2["status"] == "cached" and rec2["metrics"] == rec["metrics"]
    assert all(stages2[s]["status"] == "cached" for s in ("generate", "distill", "group", "evaluate"))
    assert rec2["mlflow_run_id"] == rec["mlflow_run_id"]  # points at the run that produced it

    third = gfkd(*args, "--force", "teacher", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    stages3 = json.loads((run_dir / "summary.json").read_text())["stages"]
    assert stages3["teacher"]["status"] == "ran"
    assert stages3["generate"]["status"] == "cached"  # the retrained teacher is bit-identical: nothing downstream redone

    fourth = gfkd(*args, "generate.iterations=6", cwd=tmp_path)  # a generate-only change re-runs generate alone
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    stages4 = json.loads((run_dir / "summary.json").read_text())["stages"]
    assert [stages4[s]["status"] for s in ("teacher", "generate", "distill", "group", "evaluate")] == [
        "cached", "ran", "ran", "ran", "ran"]

    _check_ui_serves_run(run_dir, rec["mlflow_run_id"], tmp_path)


def test_until_stops_after_the_stage_and_the_same_command_goes_on(tmp_path, tiny_root):
    runs = tmp_path / "runs"
    args = ["run", *TINY, f"run.runs_dir='{runs}'", f"--data-root={tiny_root}"]
    first = gfkd(*args, "--until", "teacher", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped after teacher (--until)" in first.stderr
    assert "gfkd: tiny-cv10-fold0: stage 1/1 teacher ran in " in first.stderr
    run_dir = Path(first.stdout.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["until"] == "teacher" and list(summary["stages"]) == ["teacher"]
    assert summary["stages"]["teacher"]["status"] == "ran" and not (run_dir / "generate").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    parent = client.get_run(client.get_run(summary["stages"]["teacher"]["mlflow_run_id"]).data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and "gfkd.status.generate" not in parent.data.tags

    second = gfkd(*args, "--until", "generate", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    stages = json.loads((run_dir / "summary.json").read_text())["stages"]
    assert {s: r["status"] for s, r in stages.items()} == {"teacher": "cached", "generate": "ran"}
    assert not (run_dir / "distill").exists()


def test_a_moved_run_folder_goes_on_from_its_new_place(tmp_path, tiny_root):
    """The cached teacher's record holds where its manifest was; the next stage must read the moved folder's copy."""
    args = ["run", *TINY, f"--data-root={tiny_root}"]
    first = gfkd(*args, f"run.runs_dir='{tmp_path / 'a'}'", "--until", "teacher", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (tmp_path / "a").rename(tmp_path / "b")
    second = gfkd(*args, f"run.runs_dir='{tmp_path / 'b'}'", "--until", "generate", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    run_dir = Path(second.stdout.strip().splitlines()[-1])
    stages = json.loads((run_dir / "summary.json").read_text())["stages"]
    assert {s: r["status"] for s, r in stages.items()} == {"teacher": "cached", "generate": "ran"}
    assert not (tmp_path / "a").exists()


def _check_ui_serves_run(run_dir: Path, run_id: str, cwd: Path) -> None:
    """`gfkd ui` binds 127.0.0.1 and serves the run's experiment and its logged curve."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "ui", str(run_dir), "--port", str(port)], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                req = urllib.request.Request(f"{base}/ajax-api/2.0/mlflow/experiments/search", method="POST",
                                             data=b'{"max_results": 10}', headers={"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(req, timeout=5).read())
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
        assert "gfkd-TINY" in [e["name"] for e in body["experiments"]]
        png = urllib.request.urlopen(f"{base}/get-artifact?path=teacher/curve.png&run_uuid={run_id}", timeout=10).read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_what_the_cli_imports_before_it_knows_the_run_writes_no_temp_file(tmp_path):
    """Importing PyG writes compiled templates into TMPDIR; the CLI and the modules it imports before entering the
    run's scratch folder (config, fail-fast data checks, the group command's names) must not import it."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    code = "import flows.cli, gfkd.data.datasets, gfkd.group.runner, sys; assert 'torch_geometric' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                       text=True, env={**os.environ, "TMPDIR": str(system_tmp)}, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(system_tmp.iterdir())


def test_version_names_gfkd_and_the_installed_dependencies():
    """`gfkd --version` prints one line, exit 0, with the versions pip installed, and loads no torch to say so."""
    from importlib.metadata import version

    import gfkd as package

    probe = ("import sys, runpy; sys.argv = ['gfkd', '--version']\n"
             "try:\n    runpy.run_module('flows.cli', run_name='__main__')\n"
             "except SystemExit as e:\n    print('torch' in sys.modules, 'prefect' in sys.modules, e.code)")
    r = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                       text=True, timeout=120)
    line, loaded = r.stdout.splitlines()
    assert line.startswith(f"gfkd {package.__version__} (") and f"torch {version('torch')}," in line, line
    assert f"torch_geometric {version('torch_geometric')}," in line and f"mlflow {version('mlflow')}" in line
    assert loaded == "False False 0" and r.stderr == "", (loaded, r.stderr)


def test_an_empty_data_root_is_named_not_taken_for_the_current_folder(tmp_path):
    """`--data-root "$UNSET"`: typer would turn "" into "."; the error says the flag is empty."""
    for cmd in ("config", "run"):
        r = gfkd(cmd, "--data-root", "", cwd=tmp_path, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().startswith("gfkd: error: --data-root is empty")


def test_group_names_data_dataset_and_its_source_when_no_flag_set_it(tmp_path):
    cfg = tmp_path / "graphs.toml"
    cfg.write_text('[data]\ndataset = "MUTAG"\n')
    for args, source in (([str(cfg)], f"the config file '{cfg}'"), (["data.dataset=MUTAG"], "an override")):
        r = gfkd("group", *args, cwd=tmp_path, timeout=60)
        assert r.returncode == 2 and r.stderr.splitlines() == [r.stderr.strip()], r.stderr
        assert f"data.dataset 'MUTAG' (from {source}) is not a node-classification set" in r.stderr
        assert "--dataset Cora" in r.stderr
    r = gfkd("group", "--dataset", "MUTAG", cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "--dataset 'MUTAG' is not a node-classification set" in r.stderr
    assert "runs its group inside `gfkd run`" in r.stderr  # where a graph set's group is


def test_a_pipeline_folder_and_a_node_group_folder_are_not_written_over_each_other(tmp_path):
    """Both keep results in group/: `gfkd group` into a `gfkd run` folder used to clear that run's group stage."""
    from flows.cli import _check_folder_kind
    from gfkd.config import resolve_config
    from gfkd.errors import ConfigError
    from gfkd.layout import RunLayout

    layout = RunLayout(tmp_path / "run")
    _check_folder_kind(layout, node=True)  # a new folder: either kind may start it
    _check_folder_kind(layout, node=False)
    layout.root.mkdir()
    for dataset, node in (("MUTAG", False), ("Cora", True)):
        layout.config.write_text(json.dumps(resolve_config(None, [f"data.dataset={dataset}"]).model_dump(mode="json")))
        _check_folder_kind(layout, node=node)  # the same kind goes on
        with pytest.raises(ConfigError, match=f"holds a .* run on {dataset}.*pass run.name=NAME"):
            _check_folder_kind(layout, node=not node)


def test_the_cli_refuses_a_folder_of_the_other_kind_before_writing(tmp_path, tiny_root):
    from gfkd.config import resolve_config

    runs = tmp_path / "runs"
    folder = runs / resolve_config(None, TINY).run_name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(resolve_config(None, ["data.dataset=Cora"]).model_dump(mode="json")))
    before = sorted(p.name for p in folder.iterdir())
    r = gfkd("run", *TINY, f"run.runs_dir='{runs}'", f"--data-root={tiny_root}", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "holds a node-level `gfkd group` run on Cora" in r.stderr, r.stderr[-2000:]
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("sig, code, line", [("SIGINT", 130, "gfkd: interrupted"),
                                             ("SIGTERM", 143, "gfkd: stopped by SIGTERM")])
def test_ctrl_c_during_the_pipeline_exits_130_at_once_and_frees_the_run_folder(tmp_path, tiny_root, sig, code, line):
    """Ctrl-C (or a SIGTERM to the group: `timeout`, a scheduler) reaches the whole process group, Prefect's
    temporary server included: the run used to spend over a minute retrying to report the crash to it and end in
    tracebacks (SIGTERM: 73 to 83 s, exit 1)."""
    import signal

    from conftest import signal_mid_teacher

    runs = tmp_path / "runs"
    proc, out, err, seconds = signal_mid_teacher(
        ["run", *TINY, "teacher.epochs=400", f"run.runs_dir='{runs}'", f"--data-root={tiny_root}"], tmp_path, runs,
        getattr(signal, sig))
    assert seconds < 15 and proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and line in err and "run the same command again" in err
    assert not list(runs.glob("*/.tmp")), list(runs.glob("*/.tmp/*"))  # the run's scratch went with it
    import fcntl  # the rerun may take the folder: the lock went with the process (the resume itself is what
    # tests/flows/test_kill_resume.py checks after a kill, which this exit equals: no handler, no cleanup)

    with open(next(runs.glob("*/.lock")), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GFKD_RUN_SLOW") != "1" or not Path("/proc/self/stat").exists(),
                    reason="slow (GFKD_RUN_SLOW=1); reads /proc")
def test_ctrl_c_while_generate_workers_start_or_run_is_one_line_and_leaves_none(tmp_path, tiny_root):
    """Ctrl-C with generate.workers=2: the workers may still be importing (SIGINT then waits, blocked, for their
    handler) or optimising; either way no traceback or warning, and no worker is left."""
    import signal
    import time

    def workers(pgid: int, started: bool = False) -> list[int]:
        """Live spawned workers of the group; `started`: only those that have read their start-up data from the
        parent (their `pipe_handle` fd closed). A Ctrl-C during their creation is held back until each has its
        data (tests/stages/test_chunks.py)."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                state = stat.read_text().rsplit(")", 1)[1].split()[0]
                cmd = (stat.parent / "cmdline").read_bytes().decode()
                group = os.getpgid(int(stat.parent.name))
                pipe = cmd.split("pipe_handle=")[1].split(")")[0] if "pipe_handle=" in cmd else None
                reading = pipe is not None and (stat.parent / "fd" / pipe).exists()
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X") and "spawn_main" in cmd and group == pgid and not (started and reading):
                out.append(int(stat.parent.name))
        return out

    for wait in (0.0, 15.0):  # at once (start-up), then while optimising
        runs = tmp_path / f"runs-{wait}"
        args = ["run", *TINY, "generate.iterations=100000", "generate.workers=2", f"run.runs_dir='{runs}'",
                f"--data-root={tiny_root}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 240
        while len(workers(proc.pid, started=True)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        started = workers(proc.pid, started=True)
        assert proc.poll() is None and started, proc.communicate()[1][-3000:] if proc.poll() is not None else "no workers"
        time.sleep(wait)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Traceback" not in err and "Warning" not in err, err[-3000:]
        time.sleep(2)
        assert not workers(proc.pid), "workers left running"


def test_ctrl_c_in_the_node_group_is_one_line_and_exit_130(tmp_path, monkeypatch, capfd):
    """Outside the pipeline typer turns Ctrl-C into exit 130 without a word: the line says how to go on."""
    import flows.cli
    import gfkd.group.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flows.cli, "_check_data", lambda *a, **k: None)
    monkeypatch.setattr(gfkd.group.runner, "run_node_group", interrupted)
    monkeypatch.setattr(sys, "argv", ["gfkd", "group", "--dataset", "Cora", "--backbone", "GCN", "--seeds", "0",
                                      f"run.runs_dir='{tmp_path}'"])
    with pytest.raises(SystemExit) as done:
        flows.cli.main()
    err = capfd.readouterr().err
    assert done.value.code == 130 and err.strip().splitlines() == [err.strip()], err
    assert err.strip() == (f"gfkd: interrupted: the finished seeds in {tmp_path / 'group-cora-gcn-oad'} are kept; run "
                           "the same command again to resume")  # worded as `gfkd run`'s
    assert json.loads((tmp_path / "group-cora-gcn-oad" / "config.json").read_text())["group"]["backbone"] == "gcn"


def test_the_data_root_given_twice_is_refused(tmp_path, tiny_root):
    """`data.root=X --data-root Y` used to take Y silently."""
    r = gfkd("config", f"data.root='{tmp_path}'", f"--data-root={tiny_root}", cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("gfkd: error: the data root is given twice, as --data-root and "
                                                     "as data.root=") and r.stderr.strip().endswith("keep one"), r.stderr


def test_ctrl_c_on_the_ui_stops_it_without_a_resume_hint(tmp_path, monkeypatch):
    """Ctrl-C is how the UI is stopped: it used to say "run the same command again to go on"."""
    from typer.testing import CliRunner

    import flows.cli
    import gfkd.tracking

    def serve(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(flows.cli, "reap_descendants_on_kill", lambda: None)
    monkeypatch.setattr(gfkd.tracking, "serve_ui", serve)
    r = CliRunner().invoke(flows.cli.app, ["ui", str(tmp_path)])
    assert r.exit_code == 130 and "again" not in r.output and "Traceback" not in r.output, r.output
