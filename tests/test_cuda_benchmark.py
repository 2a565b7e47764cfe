"""benchmarks/cuda.py on the CPU: every stage of a tiny run is recorded in the JSON, and the report sets runs side by
side and names the stages a stopped run did not reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "cuda.py"
TINY = ["data.dataset=TINY", "data.download=false", "teacher.epochs=2", "teacher.model.layers=3",
        "teacher.model.hidden=8", "generate.iterations=3", "generate.banks=1", "generate.num_graphs=16",
        "distill.epochs=1", "distill.seeds=1", "distill.student.layers=2", "distill.student.hidden=8",
        "group.graph.epochs=1", "group.graph.warmup_epochs=1"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_cpu_run_records_every_stage_and_the_report_sets_runs_side_by_side(tmp_path, tiny_root):
    out = tmp_path / "cpu.json"
    r = _run("--device", "cpu", "--data-root", str(tiny_root), "--node", "--out", str(out), "--extra", *TINY,
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert [s["stage"] for s in rec["stages"]] == ["teacher", "generate", "distill", "group", "evaluate"]
    assert all(s["wall_s"] > 0 and s["metrics"] and s["bytes"] > 0 for s in rec["stages"])
    assert "teacher/test/acc" in rec["stages"][0]["metrics"] and rec["node"] == [] and "error" not in rec
    stopped = dict(rec, device="cuda", stages=rec["stages"][:3], note="commit corrected")  # as a run killed at a
    # time limit leaves it, with a note added by hand
    (tmp_path / "stopped.json").write_text(json.dumps(stopped))
    page = tmp_path / "page.md"
    r = _run("--report", str(out), str(tmp_path / "stopped.json"), "--out", str(page), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    text = page.read_text()
    assert "| | [1] CPU | [2] CUDA |" in text and "stages not reached: group, evaluate" in text
    assert text.count("(commit corrected)") == 1
    acc = f"{rec['stages'][0]['metrics']['teacher/test/acc']:.4f}"
    assert f"| teacher: teacher test accuracy | {acc} | {acc} |" in text
    assert "| generate: outputs' size (MiB) | " in text and "| group: wall time (s) | " in text and text.count("—") >= 4  # the stopped run's group and evaluate
    digest = rec["stages"][1]["digest"]
    assert len(digest) == 64 and f"| generate: outputs' digest | `{digest[:12]}` | `{digest[:12]}` |" in text
