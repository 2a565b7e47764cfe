"""The only module that imports MLflow: a parent run per pipeline run, a nested run per stage.

Logging goes through `MlflowClient` with explicit run ids (the fluent API is not thread-safe, and Prefect runs
tasks in threads). The default backend is a SQLite file in the run folder with artifacts beside it; an explicit
`MLFLOW_TRACKING_URI` (e.g. an `mlflow server`) is honoured. Stages get a `RunLogger` (or a `NullLogger` in unit
tests) and hand it dicts and the files they wrote (figures too: MLflow keeps the run folder's bytes); they never
see MLflow.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gfkd.errors import GfkdError
from gfkd.layout import RunLayout


def tracking_uri(layout: RunLayout) -> str:
    """$MLFLOW_TRACKING_URI when set, else `sqlite:///<run>/mlflow.db`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{layout.mlflow_db.resolve()}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"teacher": {"lr": 0.01}} → {"teacher.lr": 0.01}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


class NullLogger:
    """A logger that records nothing (unit tests, or a stage run without tracking)."""

    run_id: str | None = None

    def params(self, params: dict[str, Any]) -> None: ...
    def metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def artifact(self, path: Path, folder: str | None = None) -> None: ...
    def tags(self, tags: dict[str, str]) -> None: ...
    def flush(self) -> None: ...

    def child(self, name: str, tags: dict[str, str] | None = None) -> "NullLogger":
        """A logger for a nested run under this one (a student, a fold)."""
        return NullLogger()

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close this logger's run (nested runs; stage runs are closed by their task)."""


class RunLogger(NullLogger):
    """Logs into one MLflow run; metrics are buffered and sent in batches (SQLite writes are slow)."""

    def __init__(self, tracker: "Tracker", run_id: str, flush_every_s: float = 5.0):
        self.tracker, self.run_id, self.flush_every_s = tracker, run_id, flush_every_s
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.tracker.client.log_batch(self.run_id, params=items[i:i + 100])

    def metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush > self.flush_every_s or len(self._buffer) > 900:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:900], self._buffer[900:]
            self.tracker.client.log_batch(self.run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    def artifact(self, path: Path, folder: str | None = None) -> None:
        self.tracker.client.log_artifact(self.run_id, str(path), folder)

    def tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.tracker.client.set_tag(self.run_id, k, str(v))

    def child(self, name: str, tags: dict[str, str] | None = None) -> "RunLogger":
        self.flush()
        return self.tracker.start_run(name, self.run_id, tags)

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        self.tracker.end_run(self.run_id, status)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)


def refusal(url: str, timeout: float = 3.0) -> str | None:
    """Why the http(s) server at `url` does not accept a connection within `timeout` s ("Connection refused"), or
    None when it does. Shared by the MLflow and Prefect server checks."""
    import socket

    try:
        socket.create_connection(_host_port(url), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail in seconds when an http(s) tracking server does not accept connections (MLflow itself retries for
    minutes); file and SQLite backends pass.

    Raises:
        GfkdError: naming the URI and the fix.
    """
    why = refusal(uri, timeout) if urlsplit(uri).scheme in ("http", "https") else None
    if why:
        raise GfkdError(f"MLflow tracking server {uri} is unreachable ({why}): start it (mlflow server --port "
                        f"{_host_port(uri)[1]}) or unset MLFLOW_TRACKING_URI to log into the run folder")


def check_tracking(layout: RunLayout) -> None:
    """Fail in seconds, before Prefect starts, when the tracking backend cannot be used: an http(s) server that does
    not answer, or a $MLFLOW_TRACKING_URI that MLflow refuses (a bare path, `databricks` without credentials).

    Raises:
        GfkdError: naming the URI and the fix.
    """
    uri = tracking_uri(layout)
    check_reachable(uri)
    if not os.environ.get("MLFLOW_TRACKING_URI"):  # the run folder's own SQLite file, made on first use
        damage = _damage(layout.mlflow_db) if layout.mlflow_db.is_file() else None
        if damage:
            raise GfkdError(f"{layout.mlflow_db} {damage}: move it away (to mlflow.db.damaged, say) and rerun; the "
                            "stages' results in the run folder are kept, and MLflow starts a new database")
        return
    if urlsplit(uri).scheme in ("http", "https"):
        return  # a server that answered
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow's own refusal, whatever its type
        why = _short(f"{type(exc).__name__}: {exc}")
        raise GfkdError(f"MLflow tracking at '{uri}' is unusable ({why}): set MLFLOW_TRACKING_URI to http://HOST:PORT "
                        "or sqlite:///FILE.db, or unset it to log into the run folder") from exc


def experiment_id(client, name: str, location: str | None) -> str:
    """The id of experiment `name`, created if missing. Cells running in parallel may race to create it: the loser's
    RESOURCE_ALREADY_EXISTS means the experiment is there now, so it is read again."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS" or (exp := client.get_experiment_by_name(name)) is None:
            raise
        return exp.experiment_id


def follow_moved_folder(layout: RunLayout) -> int:
    """Point the run folder's own MLflow database at this folder's artifacts when the folder has moved.

    MLflow stores absolute `file://` locations: the experiment's `<run>/mlartifacts` and each run's and logged
    model's place under it. After `mv runs/a runs/b` new runs would log into `runs/a/mlartifacts`, outside the run
    folder, and the UI would look there for the old runs' artifacts; the old prefix is rewritten to this folder's.
    Only for the default backend (no $MLFLOW_TRACKING_URI); a database SQLite cannot open is left to MLflow's own
    error, and one held busy for 30 s is left as it is, with a warning. Returns the number of experiments moved."""
    import sqlite3

    if os.environ.get("MLFLOW_TRACKING_URI") or not layout.mlflow_db.is_file():
        return 0
    new = layout.mlflow_artifacts.resolve().as_uri()
    moved = 0
    try:
        con = sqlite3.connect(layout.mlflow_db, timeout=30)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            rows = (con.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
                    if "experiments" in tables else [])
            for exp_id, old in rows:
                if old and old != new and old.startswith("file://") and old.endswith("/mlartifacts"):
                    _move_experiment(con, tables, exp_id, old, new)
                    moved += 1
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            print(f"gfkd: warning: {layout.mlflow_db} was busy: its artifact locations still point at the folder's "
                  "old place", file=sys.stderr)
    except sqlite3.Error:
        pass
    return moved


def _move_experiment(con, tables: set[str], exp_id: int, old: str, new: str) -> None:
    """One experiment's artifact location `old` → `new`, with every run's and logged model's under it (the prefix
    `old/`), in one transaction."""
    with con:
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (new, exp_id))
        for table, column in (("runs", "artifact_uri"), ("logged_models", "artifact_location")):
            if table in tables:
                con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE experiment_id = ? AND "
                            f"substr({column}, 1, ?) = ?", (new, len(old) + 1, exp_id, len(old) + 1, old + "/"))


class Tracker:
    """One MLflow experiment per dataset; runs are created and ended with explicit ids."""

    def __init__(self, layout: RunLayout, experiment: str):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.tracking import MlflowClient

        # "Creating initial MLflow database tables..." on every new run folder: not news to the user
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

        self.layout = layout
        self.uri = tracking_uri(layout)
        check_reachable(self.uri)
        follow_moved_folder(layout)
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            server = self.uri.startswith(("http://", "https://", "databricks"))  # a server keeps its own store
            location = None if server else layout.mlflow_artifacts.resolve().as_uri()
            self.experiment_id = experiment_id(self.client, experiment, location)
        except Exception as exc:  # unreachable server, locked or corrupt database
            why = _short(f"{type(exc).__name__}: {exc}")
            if os.environ.get("MLFLOW_TRACKING_URI"):
                fix = "start the server or unset MLFLOW_TRACKING_URI"
            elif damage := _damage(layout.mlflow_db):  # None for a missing file too
                fix = f"{layout.mlflow_db} {damage}: move it away and rerun"
            else:
                fix = "another process may hold the database: run again once it is done"
            raise GfkdError(f"MLflow tracking at '{self.uri}' is unusable ({why}): {fix}") from exc

    def start_run(self, name: str, parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> RunLogger:
        tags = dict(tags or {})
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return RunLogger(self, run.info.run_id)

    def logger(self, run_id: str) -> RunLogger:
        return RunLogger(self, run_id)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def resumable(self, tags: dict[str, str]) -> str | None:
        """The id of this experiment's newest run carrying every tag of `tags` if it ended FAILED or KILLED (the
        attempt a new run of the same stage and key resumes, stack.md), else None. Tag values are folder names and
        hex keys (no quotes)."""
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], where, order_by=["attributes.start_time DESC"],
                                       max_results=1)
        return runs[0].info.run_id if runs and runs[0].info.status in ("FAILED", "KILLED") else None

    def end_orphans(self) -> list[str]:
        """End as KILLED the runs the folder's own database still shows RUNNING: their process died (SIGKILL, power
        loss), since `gfkd run` and `gfkd group` hold the folder's lock while they log. Called when either opens its
        tracking, under that lock; not with $MLFLOW_TRACKING_URI, whose server may hold other commands' live runs.
        Returns their ids."""
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return []
        ids = [r.info.run_id for r in self.client.search_runs(
            [e.experiment_id for e in self.client.search_experiments()], "attributes.status = 'RUNNING'")]
        for run_id in ids:
            self.client.set_tag(run_id, "gfkd.ended_by",
                                "a later gfkd command in this folder: this run's process had died")
            self.client.set_terminated(run_id, status="KILLED")
        return ids

    def metric_history(self, run_id: str, key: str) -> list[float]:
        return [m.value for m in sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)]


def _damage(path: Path) -> str | None:
    """What is wrong with `path` as MLflow's database ("is damaged (...)", "is not an MLflow database"), or None:
    sound, empty (a file MLflow made and was killed before its tables), or nothing SQLite is sure of (locked, a hot
    journal; see `sqlite_damage`). Read-only; the file is not changed."""
    import sqlite3

    from gfkd.io.sqlite_check import sqlite_damage

    why = sqlite_damage(path)
    if why:
        return f"is damaged ({why})"
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return "is not an MLflow database (no experiments table)" if tables and "experiments" not in tables else None


def _short(text: str, width: int = 200) -> str:
    """`text` on one line, cut at a word within `width` characters, or mid-word where a word is longer than that."""
    flat = " ".join(text.split())
    cut = textwrap.shorten(flat, width, placeholder=" ...")
    return cut if len(cut) > width // 2 or len(flat) <= width else flat[:width - 4] + " ..."


def _is_mlflow_db(path: Path) -> bool:
    """Whether `path` is an SQLite file holding MLflow's experiments table (read-only; the file is not changed)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='experiments'").fetchone() is not None
    except sqlite3.DatabaseError:  # not a database
        return False
    finally:
        db.close()


def serve_ui(layout: RunLayout, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Run `mlflow ui` over the run's backend (blocks until interrupted); returns its exit code."""
    import subprocess

    uri = tracking_uri(layout)
    if uri.startswith("sqlite:") and not layout.mlflow_db.is_file():
        raise GfkdError(f"no MLflow database at {layout.mlflow_db}: pass a run folder made by `gfkd run`")
    if uri.startswith("sqlite:") and not _is_mlflow_db(layout.mlflow_db):
        raise GfkdError(f"{layout.mlflow_db} is not an MLflow database: pass a run folder made by `gfkd run`, or "
                        "move the file away and rerun the run to log again")
    follow_moved_folder(layout)  # the old runs' artifacts, where the folder is now
    import errno
    import socket

    with socket.socket() as probe:  # mlflow ui reports a taken port in its log and still exits 0
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: only a listener blocks
        try:
            probe.bind((host, port))
        except OSError as exc:
            fix = (f"pass another --port, e.g. --port {port + 1}" if exc.errno == errno.EADDRINUSE
                   else "pass --host 127.0.0.1 or an address of this machine")
            raise GfkdError(f"cannot listen on {host}:{port} ({exc.strerror or type(exc).__name__}): {fix}") from exc
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", "1"]  # one reader: one worker, not mlflow's 4
    cmd += ["--registry-store-uri", uri] if uri.startswith("sqlite:") else []  # as mlflow would, without its notice
    print(f"MLflow UI for {layout.root} at http://{host}:{port} (Ctrl-C to stop)", file=sys.stderr)
    return subprocess.call(cmd, env=server_env(), cwd=layout.root)


def server_env() -> dict[str, str]:
    """The environment of an `mlflow ui` or `mlflow server` we start: no telemetry, no job-runner folder, and not
    the deprecation warning of mlflow's own starlette import (nothing a user can act on; their filters are kept)."""
    quiet = "ignore:starlette.middleware.wsgi is deprecated"
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # else each launch leaves a huey folder in /dev/shm
            **os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
            "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))}
