"""Hermetic test set-up: Prefect, MLflow and every output go to temporary folders; nothing touches the network.

The environment is set here, before any test imports prefect or mlflow.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from flows.env import local_env  # noqa: E402  (imports no prefect)

_TMP = Path(tempfile.mkdtemp(prefix="gfkd-tests-"))
os.environ.update(local_env(_TMP / "prefect", _TMP / "prefect" / "storage"))
(_TMP / "tmp").mkdir()  # every temporary file of the session, ours and the libraries', pytest's tmp_path included
os.environ["TMPDIR"] = tempfile.tempdir = str(_TMP / "tmp")
os.environ["MPLCONFIGDIR"] = str(_TMP / "matplotlib")  # matplotlib's font cache, not in the user's home
for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "GFKD_DATA_ROOT"):
    os.environ.pop(key, None)

MAX_WORKERS = 4  # each worker starts its own Prefect servers; more than this gains little and costs memory


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one pytest-xdist worker per core, at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def pytest_configure(config) -> None:
    """Several workers share the cores: each runs torch on one thread, as `gfkd run` does by default (run.threads), so
    no worker's thread pool waits on another's (docs/pipeline.md, "Threads": two threads beside one other job ran the
    teacher 22-24 times slower). A `.env` or `prefect.toml` here that names a Prefect API (Prefect reads both) would
    send the in-process flows to that server (stack.md): the session stops with how to fix it."""
    from flows.env import prefect_api_url

    url, source = prefect_api_url()
    if url:
        raise pytest.UsageError(f"{source} sets the Prefect API {url}, which Prefect reads: the tests would run their "
                                "flows on that server. Move the file away (or run pytest from another folder)")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _no_recorded_command(monkeypatch):
    """flows/cli.py's main() records its command line in os.environ for the run's report; a test that calls it in this
    process must not hand it to the next test (setenv, unlike delenv of an unset name, is undone at teardown)."""
    from gfkd.versions import COMMAND_ENV

    monkeypatch.setenv(COMMAND_ENV, "")


def write_tu(root: Path, name: str, graphs: list[tuple[list[tuple[int, int]], int, list[int] | None]]) -> Path:
    """Write graphs in TU format under root/name/raw: each graph = (undirected edges, label, node labels or None)."""
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    a, ind, glab, nlab = [], [], [], []
    offset = 0
    for gi, (edges, label, node_labels) in enumerate(graphs, start=1):
        n = 1 + max(max(e) for e in edges)
        for u, v in edges:
            a += [(u + offset + 1, v + offset + 1), (v + offset + 1, u + offset + 1)]
        ind += [gi] * n
        glab.append(label)
        nlab += node_labels if node_labels is not None else []
        offset += n
    (raw / f"{name}_A.txt").write_text("".join(f"{u}, {v}\n" for u, v in a))
    (raw / f"{name}_graph_indicator.txt").write_text("".join(f"{i}\n" for i in ind))
    (raw / f"{name}_graph_labels.txt").write_text("".join(f"{y}\n" for y in glab))
    if nlab:
        (raw / f"{name}_node_labels.txt").write_text("".join(f"{y}\n" for y in nlab))
    return root


def tiny_graphs(num: int = 40, seed: int = 0, node_labels: bool = True) -> list:
    """Class 0: cycles; class 1: stars (5-7 nodes). Node labels: 0 on leaves/ring, 1 on the hub, 2 on node 1."""
    rng = np.random.RandomState(seed)
    graphs = []
    for g in range(num):
        n = int(rng.randint(5, 8))
        label = g % 2
        if label == 0:
            edges = [(i, (i + 1) % n) for i in range(n)]
            labels = [0] * n
        else:
            edges = [(0, i) for i in range(1, n)]
            labels = [1] + [0] * (n - 1)
        labels[1] = 2
        graphs.append((edges, label + 1, labels if node_labels else None))  # TU labels 1/2, remapped to 0/1
    return graphs


def path_graphs(num: int = 12, f: int = 3) -> list:
    """`num` path graphs of 4-6 nodes as PyG Data with random one-hot features of width `f`, alternating labels,
    graph ids and a difficulty k / num: inputs for the student-side loops, no dataset."""
    import torch
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(num):
        n = 4 + k % 3
        src = torch.arange(n - 1)
        ei = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
        x = torch.nn.functional.one_hot(torch.randint(0, f, (n,), generator=g), f).float()
        out.append(Data(x=x, edge_index=ei, num_nodes=n, y=torch.tensor([k % 2]), graph_id=torch.tensor([k]),
                        difficulty=torch.tensor([k / num])))
    return out


def mlflow_db_file(path: Path) -> Path:
    """An SQLite file with the table `gfkd ui` looks for (MLflow's `experiments`), for tests of the UI's checks that
    do not start MLflow; test_tracking checks that a real tracker's database passes the same check."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    return path


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A data root with TINY (node labels) and TINYDEG (featureless) TU datasets of 40 graphs."""
    root = tmp_path_factory.mktemp("data")
    write_tu(root, "TINY", tiny_graphs())
    write_tu(root, "TINYDEG", tiny_graphs(node_labels=False))
    return root


@pytest.fixture(scope="session")
def shared_root() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/datasets not present")
    return SHARED


def _teacher(tiny_root, tmp_path_factory, dataset):
    """A teacher trained for a few epochs on a tiny dataset through the teacher stage; returns its folder."""
    from gfkd.config import resolve_config
    from gfkd.layout import RunLayout
    from gfkd.stages import teacher

    runs = tmp_path_factory.mktemp(f"teacher-{dataset}")
    cfg = resolve_config(None, [f"data.dataset={dataset}", "teacher.epochs=5", "teacher.model.layers=3",
                                "teacher.model.hidden=8", "teacher.batch_size=8", f"data.root='{tiny_root}'",
                                f"run.runs_dir='{runs}'", "data.download=false"])
    layout = RunLayout(runs / "run")
    teacher.run(cfg, layout, "k")
    return layout.stage_dir("teacher")


@pytest.fixture(scope="session")
def tiny_teacher_dir(tiny_root, tmp_path_factory):
    return _teacher(tiny_root, tmp_path_factory, "TINY")


@pytest.fixture(scope="session")
def tiny_deg_teacher_dir(tiny_root, tmp_path_factory):
    return _teacher(tiny_root, tmp_path_factory, "TINYDEG")


_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus) -> None:
    _STATUS.append(int(exitstatus))


@atexit.register  # registered first, so it runs last: after prefect_test_harness's own atexit clean-up
def _remove_tmp() -> None:
    """A green session leaves nothing behind; a failed one keeps its folder (printed) to look into."""
    if _STATUS == [0]:
        shutil.rmtree(_TMP, ignore_errors=True)
    else:
        print(f"test outputs kept in {_TMP}")


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m flows.cli ARGS` in its own session (a test can kill its process group), with the caller's Prefect
    and MLflow tracking settings removed, as a user's shell would start it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env |= {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def signal_mid_teacher(args: list[str], cwd: Path, runs: Path, sig: int) -> tuple[subprocess.Popen, str, str, float]:
    """start_cli(args), then `sig` to its process group once a teacher stage is under way in `runs`: the process, its
    stdout and stderr, and the seconds from the signal to its exit. One that ignores the signal is killed, so that it
    cannot outlive the test."""
    proc = start_cli(args, cwd)
    try:
        deadline = time.monotonic() + 240
        while not list(runs.glob("*/.teacher.partial")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the command ended before a teacher stage began"
        t0 = time.monotonic()
        os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does, or `kill -TERM -PGID`
        out, err = proc.communicate(timeout=60)
        return proc, out, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
