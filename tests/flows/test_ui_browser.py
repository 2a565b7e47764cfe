"""The MLflow UI of a finished tiny run, as a user meets it in a real headless browser (Debian's chromium).

The run ids come from MLflow's REST API; chromium renders the pages (`--dump-dom` after the app's requests settle)
and the test reads what a user would see: the parent run lists its stage runs, the teacher's curve is shown, and the
evaluate stage's Markdown report is displayed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

TINY = ["teacher.epochs=3", "teacher.model.layers=3", "teacher.model.hidden=8", "teacher.batch_size=8",
        "data.download=false", "generate.banks=2", "generate.iterations=5", "distill.epochs=2", "distill.seeds=1",
        "distill.student.layers=2", "distill.student.hidden=8", "group.graph.warmup_epochs=1",
        "group.graph.epochs=1", "group.graph.students=2"]
STAGES = ["teacher", "generate", "distill", "group", "evaluate"]


def _find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and possible, else the test is skipped."""
    path = _find_chromium()
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
                           capture_output=True, timeout=60, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except (OSError, subprocess.TimeoutExpired):
            pass
        path = _find_chromium()
    if path is None:
        pytest.skip("chromium is not installed and `apt-get install chromium` did not install it (no network or not "
                    "root): install Debian's chromium to run the browser test")
    return path


def _dom(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (virtual time lets the app's fetches finish)."""
    r = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _api(base: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{base}/ajax-api/2.0/mlflow/{path}", method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


@pytest.mark.e2e
def test_ui_shows_the_stage_runs_and_a_logged_figure(tmp_path, tiny_root, chromium):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cli = [sys.executable, "-m", "flows.cli"]
    run = subprocess.run([*cli, "run", "data.dataset=TINY", *TINY, f"run.runs_dir='{tmp_path / 'runs'}'",
                          f"--data-root={tiny_root}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = Path(run.stdout.strip().splitlines()[-1])

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "ui.log"
    with log.open("w") as err:
        ui = subprocess.Popen([*cli, "ui", str(run_dir), "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                exp = _api(base, "experiments/get-by-name?experiment_name=gfkd-TINY")["experiment"]["experiment_id"]
                break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, "the MLflow UI did not start"
                time.sleep(1)
        runs = _api(base, "runs/search", {"experiment_ids": [exp], "max_results": 100})["runs"]
        name = {r["info"]["run_id"]: r["info"]["run_name"] for r in runs}
        tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
        (parent,) = [i for i, t in tags.items() if "mlflow.parentRunId" not in t]
        stage_ids = {name[i]: i for i, t in tags.items() if t.get("mlflow.parentRunId") == parent}
        assert set(stage_ids) == set(STAGES)

        page = _dom(chromium, f"{base}/#/experiments/{exp}/runs/{parent}", tmp_path / "chrome")
        text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script).*?</\1>", "", page, flags=re.S)).split())
        assert name[parent] in text and "Child runs" in text
        listed = text.split("Child runs", 1)[1][:300]
        assert all(stage in listed for stage in STAGES), listed

        figure = "teacher/curve.png"
        page = _dom(chromium, f"{base}/#/experiments/{exp}/runs/{stage_ids['teacher']}/artifacts/{figure}",
                    tmp_path / "chrome")
        img = re.search(rf'<img[^>]*alt="{re.escape(figure)}"[^>]*>', page)
        assert img and 'src="blob:' in img.group(0), page[-2000:]  # the PNG was fetched and shown

        report = "evaluate/report.md"  # the evaluate stage's Markdown report, as the artifact viewer shows it
        for _ in range(3):  # a loaded machine can run out of virtual time before the artifact arrives
            page = _dom(chromium, f"{base}/#/experiments/{exp}/runs/{stage_ids['evaluate']}/artifacts/{report}",
                        tmp_path / "chrome")
            text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script).*?</\1>", "", page, flags=re.S)).split())
            if f"gfkd report: {name[parent]}" in text:
                break
        assert f"gfkd report: {name[parent]}" in text, text[-2000:]
        assert "majority class" in text and "teacher" in text.split("gfkd report", 1)[1]
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)
    assert "Warning" not in log.read_text(), log.read_text()  # mlflow's StarletteDeprecationWarning is filtered
