"""A SIGKILL during `gfkd group` on Cora, then the same command: the seeds already written are kept, the rest are
trained, and every seed's numbers equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import start_cli

ARGS = ["--dataset", "Cora", "--seeds", "0..3", "group.warmup_epochs=2", "group.epochs=40", "group.hidden=8",
        "group.students=2"]


def _start(runs: Path, root: Path, cwd: Path) -> subprocess.Popen:
    return start_cli(["group", *ARGS, f"run.runs_dir='{runs}'", f"--data-root={root}"], cwd)


def _numbers(results: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in results["per_seed"]]  # the wall time is the machine's


@pytest.mark.e2e
@pytest.mark.slow  # 3 CLI runs on Cora; the in-process keep tests (tests/group/test_runner.py) run always
@pytest.mark.skipif(os.environ.get("GFKD_RUN_SLOW") != "1", reason="slow: set GFKD_RUN_SLOW=1 or run benchmarks/reliability.py")
def test_sigkill_during_the_node_group_then_rerun(tmp_path, shared_root):
    ref = _start(tmp_path / "ref", shared_root, tmp_path)
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err[-3000:]
    reference = json.loads((tmp_path / "ref" / "group-cora-gcn-oad" / "group" / "results.json").read_text())

    out = tmp_path / "runs" / "group-cora-gcn-oad" / "group"
    proc = _start(tmp_path / "runs", shared_root, tmp_path)
    deadline = time.time() + 300
    while not (out / "seed-0.json").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "seed 0 was not written in time"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = sorted(int(p.stem.split("-")[1]) for p in out.glob("seed-*.json"))
    assert written and written != [0, 1, 2, 3] and not (out / "results.json").exists(), written
    assert not [p for p in out.iterdir() if not p.name.startswith(("seed-", "."))]  # nothing half-written published

    again = _start(tmp_path / "runs", shared_root, tmp_path)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["kept_seeds"] == written and err.count("kept from an earlier run") == len(written)
    assert _numbers(results) == _numbers(reference) and results["summary"] == reference["summary"]
