"""Safe defaults: checkpoints load with weights_only=True, shards hold no pickled objects, `gfkd ui` binds
127.0.0.1, and a whole tiny run's stages and an MLflow run on SQLite open no connection beyond the loopback (the
stages here run in-process without Prefect; tests/flows/test_cli.py watches the whole `gfkd run`, Prefect's server
and MLflow tracking included, with the same guard in every process)."""

from __future__ import annotations

import ast
import socket
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import mlflow_db_file
from kill_harness import drive
from network_guard import install

REPO = Path(__file__).resolve().parents[2]


def _calls(name: str):
    for path in [*(REPO / "gfkd").rglob("*.py"), *(REPO / "tasks").rglob("*.py"), *(REPO / "flows").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.relative_to(REPO), node


def test_every_torch_load_uses_weights_only():
    loads = list(_calls("torch.load"))
    assert loads, "no torch.load found: the check looks in the wrong place"
    for path, call in loads:
        kw = {k.arg: k.value for k in call.keywords}
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
            f"{path}:{call.lineno} torch.load without weights_only=True"
    assert not list(_calls("pickle.load")) and not list(_calls("pickle.loads"))


def _plain(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        return _plain(t.value_type)
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)


def _no_network(monkeypatch) -> list:
    """Refuse (and record) every connection that does not go to the loopback, undone after the test."""
    attempts: list = []
    install(attempts.append, monkeypatch.setattr)
    # create_connection resolves names first: refuse the name itself, as a test machine may resolve nothing
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: socket.socket().connect(address))
    return attempts


def test_a_tiny_run_makes_no_network_call_and_its_shards_hold_no_pickles(tmp_path, tiny_root, monkeypatch):
    attempts = _no_network(monkeypatch)
    args = ["data.dataset=TINY", "data.download=false", "teacher.epochs=3", "teacher.model.layers=3",
            "teacher.model.hidden=8", "teacher.batch_size=8", "generate.banks=1", "generate.iterations=5",
            "distill.epochs=1", "distill.seeds=1", "distill.student.layers=2", "distill.student.hidden=8",
            "group.graph.warmup_epochs=1", "group.graph.epochs=1", "group.graph.students=2"]
    drive(tmp_path / "runs", tiny_root, tmp_path / "progress.txt", args)
    from gfkd.layout import RunLayout
    from gfkd.tracking import Tracker

    tracker = Tracker(RunLayout(tmp_path / "runs" / "tiny-cv10-fold0"), "gfkd-TINY")  # MLflow on SQLite
    logger = tracker.start_run("probe")
    logger.metrics({"teacher/train/loss": 1.0}, step=0)
    logger.end()
    assert attempts == []
    assert (tmp_path / "runs" / "tiny-cv10-fold0" / "evaluate" / "manifest.json").is_file()

    shards = sorted((tmp_path / "runs" / "tiny-cv10-fold0" / "generate" / "shards").glob("shard-*.parquet"))
    assert shards
    for shard in shards:
        schema = pq.read_schema(shard)
        assert all(_plain(f.type) for f in schema), schema  # ints, floats, strings and lists of them: no objects
        assert not any(k.startswith((b"pandas", b"ARROW:extension")) for k in schema.metadata)


def test_the_network_guard_refuses_other_hosts(monkeypatch):
    attempts = _no_network(monkeypatch)
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
    assert attempts == [("192.0.2.1", 80)]


def test_ui_binds_the_loopback_by_default(tmp_path, monkeypatch):
    import subprocess

    from flows.cli import app

    mlflow_db_file(tmp_path / "mlflow.db")
    seen = {}
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: seen.setdefault("cmd", cmd) and 0)
    r = CliRunner().invoke(app, ["ui", str(tmp_path)])
    assert r.exit_code == 0, r.output
    cmd = seen["cmd"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert sys.executable == cmd[0]
