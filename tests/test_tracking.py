"""gfkd.tracking: runs, nesting, metrics, figures and artifacts; MLFLOW_TRACKING_URI is honoured."""

import socket
import subprocess
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from conftest import mlflow_db_file
from gfkd.errors import GfkdError
from gfkd.layout import RunLayout
from gfkd.tracking import Tracker, _is_mlflow_db, check_tracking, flatten, serve_ui, tracking_uri


def test_default_backend_is_sqlite_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    layout = RunLayout(tmp_path / "run")
    assert tracking_uri(layout) == f"sqlite:///{(tmp_path / 'run' / 'mlflow.db').resolve()}"


def test_parent_and_stage_runs_with_metrics_figures_artifacts(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # e.g. a tracking server; here another SQLite file
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    tracker = Tracker(layout, "gfkd-TEST")
    assert tracker.uri == uri and not layout.mlflow_db.exists()
    parent = tracker.start_run("pipeline")
    stage = tracker.start_run("teacher", parent.run_id, tags={"gfkd.stage": "teacher"})
    stage.params({"teacher": {"lr": 0.01, "model": {"arch": "gin"}}})
    for epoch in range(5):
        stage.metrics({"teacher/train/loss": 1.0 / (epoch + 1)}, step=epoch)
    stage.flush()
    fig = Figure()
    fig.subplots().plot([0, 1])
    fig.savefig(tmp_path / "curve.png")
    stage.artifact(tmp_path / "curve.png", "teacher")
    (tmp_path / "a.json").write_text("{}")
    stage.artifact(tmp_path / "a.json", "teacher")
    tracker.end_run(stage.run_id)
    run = tracker.client.get_run(stage.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id and run.info.status == "FINISHED"
    assert run.data.params["teacher.model.arch"] == "gin"
    assert tracker.metric_history(stage.run_id, "teacher/train/loss") == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert {a.path for a in tracker.client.list_artifacts(stage.run_id, "teacher")} == {"teacher/curve.png",
                                                                                       "teacher/a.json"}
    assert (layout.mlflow_artifacts / stage.run_id).is_dir() or any(layout.mlflow_artifacts.rglob("a.json"))
    assert not Path("mlruns").exists()  # nothing lands in the working directory


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_losing_the_race_to_create_the_experiment_reads_the_winners():
    """Two parallel cells both miss the experiment; the second create gets RESOURCE_ALREADY_EXISTS from the server."""
    from types import SimpleNamespace

    import pytest
    from mlflow.exceptions import MlflowException, RestException

    from gfkd.tracking import experiment_id

    class RacedClient:
        def __init__(self):
            self.lookups = 0

        def get_experiment_by_name(self, name):
            self.lookups += 1
            return None if self.lookups == 1 else SimpleNamespace(experiment_id="7")  # the winner's, created meanwhile

        def create_experiment(self, name, artifact_location=None):
            raise RestException({"error_code": "RESOURCE_ALREADY_EXISTS", "message": "already exists"})

    assert experiment_id(RacedClient(), "gfkd-TINY", None) == "7"

    class BrokenClient(RacedClient):
        def create_experiment(self, name, artifact_location=None):
            raise MlflowException("database is locked")

    with pytest.raises(MlflowException, match="locked"):  # any other failure still surfaces
        experiment_id(BrokenClient(), "gfkd-TINY", None)


def test_ui_refuses_a_taken_port_and_keeps_mlflow_jobs_out_of_dev_shm(tmp_path, monkeypatch):
    layout = RunLayout(tmp_path)
    mlflow_db_file(layout.mlflow_db)
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env, cwd: calls.append(env) or 0)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(GfkdError, match=f"cannot listen on 127.0.0.1:{port} .*--port {port + 1}"):
            serve_ui(layout, port=port)
    assert calls == []
    assert serve_ui(layout, port=port) == 0  # free again
    assert calls[0]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_a_new_tracking_database_is_created_quietly(tmp_path, capfd):
    Tracker(RunLayout(tmp_path), "quiet")
    assert (tmp_path / "mlflow.db").is_file() and "Creating initial MLflow database tables" not in capfd.readouterr().err
    assert _is_mlflow_db(tmp_path / "mlflow.db")  # what `gfkd ui` checks before it starts MLflow


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 50])
def test_ui_refuses_a_file_that_is_not_an_mlflow_database(tmp_path, monkeypatch, content):
    layout = RunLayout(tmp_path)
    layout.mlflow_db.write_bytes(content)
    monkeypatch.setattr(subprocess, "call", lambda *a, **kw: pytest.fail("MLflow started on a broken database"))
    with pytest.raises(GfkdError, match="is not an MLflow database: pass a run folder made by `gfkd run`"):
        serve_ui(layout, port=5000)
    assert layout.mlflow_db.read_bytes() == content  # read only


@pytest.mark.parametrize("uri", ["foo", "file:///proc/nope"])  # MLflow 3 refuses a bare path or file store
def test_an_unusable_tracking_uri_fails_before_the_run_starts(tmp_path, monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GfkdError, match=f"MLflow tracking at '{uri}' is unusable .*: set MLFLOW_TRACKING_URI to "
                                        "http://HOST:PORT or sqlite:///FILE.db, or unset it") as err:
        check_tracking(RunLayout(tmp_path / "run"))
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


def test_a_usable_tracking_uri_passes(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    check_tracking(RunLayout(tmp_path / "run"))  # the run folder's own database: made on first use, not here
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'shared.db'}")
    check_tracking(RunLayout(tmp_path / "run"))
    assert _is_mlflow_db(tmp_path / "shared.db")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "another database"])
def test_a_damaged_run_database_is_one_line_naming_it_before_the_run_starts(tmp_path, monkeypatch, damage):
    """A truncated mlflow.db used to end the run in a 116-line traceback advising to unset a variable nobody set."""
    import sqlite3

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    tracker = Tracker(layout, "damaged")
    for i in range(30):  # pages enough that a cut lands inside a table
        tracker.end_run(tracker.start_run(f"r{i}").run_id)
    check_tracking(layout)  # sound: passes
    if damage == "truncated":
        with open(layout.mlflow_db, "r+b") as fh:
            fh.truncate(layout.mlflow_db.stat().st_size // 2)
    elif damage == "garbage":
        layout.mlflow_db.write_bytes(b"not a database at all" * 500)
    else:
        layout.mlflow_db.unlink()
        with sqlite3.connect(layout.mlflow_db) as con:
            con.execute("CREATE TABLE other (x)")
        con.close()
    before = layout.mlflow_db.read_bytes()
    with pytest.raises(GfkdError, match=f"{layout.mlflow_db} .*: move it away .* and rerun") as err:
        check_tracking(layout)
    assert "\n" not in str(err.value) and "MLFLOW_TRACKING_URI" not in str(err.value)
    assert layout.mlflow_db.read_bytes() == before  # read only


def test_an_empty_run_database_is_left_to_mlflow(tmp_path, monkeypatch):
    """A file MLflow made and was killed before it wrote its tables: MLflow makes them on the next run."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    layout.mlflow_db.write_bytes(b"")
    check_tracking(layout)
    Tracker(layout, "fresh")


def test_a_locked_run_database_or_a_hot_journal_is_not_called_damaged(tmp_path, monkeypatch):
    """A run killed mid-write leaves mlflow.db-journal, which a read-only open cannot roll back ("attempt to write a
    readonly database"); another writer's lock reads "database is locked". Neither is damage: moving the file away,
    as the damage message advises, would throw the run's history away for nothing."""
    import sqlite3

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    Tracker(layout, "busy")
    writer = sqlite3.connect(layout.mlflow_db, timeout=0)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        check_tracking(layout)
    finally:
        writer.rollback()
        writer.close()
    (tmp_path / "run" / "mlflow.db-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + b"\0" * 504)
    check_tracking(layout)


def test_a_long_refusal_keeps_its_words():
    from gfkd.tracking import _short

    assert _short("OperationalError: " + "x" * 300).startswith("OperationalError: xxxx")  # shorten dropped it all
    assert _short("a b  c\n d") == "a b c d" and len(_short("word " * 100)) <= 200


def test_a_moved_run_folder_logs_into_its_new_place_and_finds_its_old_artifacts(tmp_path, monkeypatch):
    """MLflow keeps absolute artifact locations: after `mv a b` nothing may be written under a/ again."""
    from gfkd.tracking import follow_moved_folder

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "f.json").write_text("{}")
    before = Tracker(RunLayout(tmp_path / "a"), "gfkd-TEST")
    old = before.start_run("teacher")
    old.artifact(tmp_path / "f.json", "teacher")
    before.end_run(old.run_id)
    del before
    (tmp_path / "a").rename(tmp_path / "b")
    layout = RunLayout(tmp_path / "b")
    after = Tracker(layout, "gfkd-TEST")
    new = after.start_run("generate")
    new.artifact(tmp_path / "f.json", "generate")
    after.end_run(new.run_id)
    assert not (tmp_path / "a").exists()
    here = layout.mlflow_artifacts.resolve().as_uri()
    for run_id, folder in ((old.run_id, "teacher"), (new.run_id, "generate")):
        assert after.client.get_run(run_id).info.artifact_uri.startswith(here)
        assert [a.path for a in after.client.list_artifacts(run_id, folder)] == [f"{folder}/f.json"]
    assert follow_moved_folder(layout) == 0  # done once: nothing left to rewrite


def test_runs_left_running_by_a_dead_process_end_as_killed_when_the_folder_is_opened_again(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = Tracker(RunLayout(tmp_path / "run"), "gfkd-TEST")
    parent = first.start_run("pipeline")
    done = first.start_run("teacher", parent.run_id)
    first.end_run(done.run_id)
    dead = first.start_run("generate", parent.run_id)  # the process is killed here: no end_run
    again = Tracker(RunLayout(tmp_path / "run"), "gfkd-TEST")
    assert sorted(again.end_orphans()) == sorted([parent.run_id, dead.run_id])
    status = {r: again.client.get_run(r).info.status for r in (parent.run_id, done.run_id, dead.run_id)}
    assert status == {parent.run_id: "KILLED", done.run_id: "FINISHED", dead.run_id: "KILLED"}
    assert "process had died" in again.client.get_run(dead.run_id).data.tags["gfkd.ended_by"]
    assert again.end_orphans() == []


def test_a_tracking_server_keeps_its_running_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'server.db'}")  # stands for a shared server
    tracker = Tracker(RunLayout(tmp_path / "run"), "gfkd-TEST")
    live = tracker.start_run("someone else's stage")
    assert tracker.end_orphans() == [] and tracker.client.get_run(live.run_id).info.status == "RUNNING"
