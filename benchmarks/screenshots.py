"""README screenshots: the MLflow UI of a finished run (its stage runs, a logged figure) and its Markdown report.

    python benchmarks/screenshots.py RUN_DIR [--out docs/img] [--port 0]

RUN_DIR is a run folder made by `gfkd run` or a benchmark folder made by `gfkd benchmark` (`<runs_dir>/benchmark`).
The script starts `gfkd ui RUN_DIR` (as `python -m flows.cli ui`) on a free port of 127.0.0.1, finds the run ids
through MLflow's REST API and has Debian's headless chromium write into --out:

- ui-runs.png: `#/experiments/<id>/runs`, the experiment's run list sorted oldest first by the key
  attributes.`Created` (MLflow's alias of start_time, which the UI does not nest under collapsed parents as it does
  with its own start_time key), so the pipeline run comes first and its stage runs follow in pipeline order with
  their nested runs. Chosen over the parent run's page, which only names the stage runs in one "Child runs" line, and
  over the default list, which shows the parent run collapsed. A benchmark folder shows the experiment of its first
  cell, whose cells' runs interleave.
- ui-figure.png: the artifact view of the first PNG logged by the evaluate stage run (else the teacher's).
- report.png: evaluate/report.md of a run folder (results.md of a benchmark folder) rendered to HTML.

Chromium opens the UI as http://gfkd.localhost:PORT (it resolves *.localhost to the loopback itself), with that
host allowed through MLFLOW_SERVER_ALLOWED_HOSTS and MLFLOW_SERVER_CORS_ALLOWED_ORIGINS: MLflow opens its assistant
side panel only on pages served from "localhost" or "127.0.0.1", and the panel would cover a third of each picture.
"""

from __future__ import annotations

if __name__ == "__main__":  # PyG's import writes compiled templates into the temp dir: a folder removed at exit
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one's
    from flows.env import private_tmp_until_exit

    private_tmp_until_exit()

import argparse
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "generate", "distill", "group", "evaluate")
WIDTH = 1400
CSS = """body { font: 15px/1.5 system-ui, sans-serif; max-width: 1300px; margin: 24px auto; color: #222; }
table { border-collapse: collapse; margin: 12px 0; } th, td { border: 1px solid #ccc; padding: 4px 10px; }
th { background: #f0f3f6; text-align: left; } tr:nth-child(even) td { background: #fafbfc; }
code { background: #f0f3f6; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
img { max-width: 49%; vertical-align: top; }"""
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_RULE = re.compile(r"\s*\|?[\s:|-]+\|?\s*")  # the |---|---| line under a table's header


def _inline(text: str) -> str:
    """Escape one line and render its images, links, code spans and bold text."""
    out, last = [], 0
    for m in re.finditer(r"`([^`]+)`|!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|\*\*(.+?)\*\*", text):
        out.append(html.escape(text[last:m.start()]))
        code, alt, src, label, href, bold = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif src is not None:
            out.append(f'<img alt="{html.escape(alt)}" src="{html.escape(src)}">')
        elif href is not None:
            out.append(f'<a href="{html.escape(href)}">{html.escape(label)}</a>')
        else:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        last = m.end()
    return "".join(out) + html.escape(text[last:])


def _cells(line: str) -> list[str]:
    """The cells of one pipe-table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def basic_markdown(text: str) -> str:
    """HTML of the Markdown subset the reports use: headings, paragraphs, `-` lists, pipe tables, inline markup."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            out.append(f"<h{len(m[1])}>{_inline(m[2])}</h{len(m[1])}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _RULE.fullmatch(lines[i + 1]):
            rows = [f"<tr>{''.join(f'<th>{_inline(c)}</th>' for c in _cells(line))}</tr>"]
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(f"<tr>{''.join(f'<td>{_inline(c)}</td>' for c in _cells(lines[i]))}</tr>")
                i += 1
            out.append("<table>\n" + "\n".join(rows) + "\n</table>")
        elif re.match(r"\s*[-*]\s", line):
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s", lines[i]):
                items.append("<li>" + _inline(re.sub(r"^\s*[-*]\s+", "", lines[i])) + "</li>")
                i += 1
            out.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        else:
            para = [_inline(line)]
            i += 1
            while i < len(lines) and lines[i].strip() and not re.match(r"#{1,6}\s|\s*[-*]\s|\s*\|", lines[i]):
                para.append(_inline(lines[i]))
                i += 1
            out.append("<p>" + "\n".join(para) + "</p>")
    return "\n".join(out)


def render_report(markdown_file: Path) -> str:
    """A standalone HTML page of a Markdown report, its relative image links made absolute file:// URLs."""
    base = markdown_file.resolve().parent
    text = _IMAGE.sub(lambda m: m[0] if re.match(r"[a-z]+:", m[2]) else f"![{m[1]}]({(base / m[2]).as_uri()})",
                      markdown_file.read_text(encoding="utf-8"))
    try:
        import markdown
        body = markdown.markdown(text, extensions=["tables"])
    except ImportError:
        body = basic_markdown(text)
    head = f'<head><meta charset="utf-8"><style>{CSS}</style></head>'
    return f"<!doctype html>\n<html>{head}<body>\n{body}\n</body></html>\n"


def _api(base: str, path: str, body: dict | None = None) -> dict:
    """One call of MLflow's REST API (a POST when body is given)."""
    req = urllib.request.Request(f"{base}/ajax-api/2.0/mlflow/{path}", method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


def _first_png(base: str, run_id: str, path: str = "") -> str | None:
    """The first PNG artifact of a run, folders walked in name order."""
    files = _api(base, f"artifacts/list?run_id={run_id}&path={path}").get("files", [])
    for f in sorted(files, key=lambda f: f["path"]):
        if f.get("is_dir") and (found := _first_png(base, run_id, f["path"])):
            return found
        if not f.get("is_dir") and f["path"].endswith(".png"):
            return f["path"]
    return None


def _free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shoot(chromium: str, url: str, png: Path, height: int, profile: Path) -> None:
    """Have headless chromium write a screenshot of url (virtual time lets the page's requests finish)."""
    r = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--hide-scrollbars", f"--window-size={WIDTH},{height}", "--virtual-time-budget=20000",
                        f"--user-data-dir={profile}", f"--screenshot={png}", url],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed on {url}: {r.stderr.strip()[-500:]}")
    print(png)


def screenshots(run_dir: Path, out: Path, port: int, chromium: str) -> None:
    """Serve run_dir's MLflow UI and write ui-runs.png, ui-figure.png and report.png into out."""
    port = port or _free_port()
    host = f"gfkd.localhost:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "MLFLOW_SERVER_ALLOWED_HOSTS":
            f"127.0.0.1:{port},{host}", "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": f"http://{host}"}
    ui = subprocess.Popen([sys.executable, "-m", "flows.cli", "ui", str(run_dir), "--port", str(port)], cwd=REPO,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    api, page = f"http://127.0.0.1:{port}", f"http://{host}/#/experiments"
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="gfkd-shots-") as tmp:
            deadline = time.monotonic() + 300
            while True:
                try:
                    exps = [e["experiment_id"] for e in _api(api, "experiments/search?max_results=1000")["experiments"]]
                    break
                except OSError:
                    if ui.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the MLflow UI over {run_dir} did not start (try `gfkd ui {run_dir}`)")
                    time.sleep(1)
            runs = _api(api, "runs/search", {"experiment_ids": exps, "max_results": 1000,
                                             "order_by": ["attributes.start_time ASC"]})["runs"]
            parent_of = {r["info"]["run_id"]: next((t["value"] for t in r["data"].get("tags", [])
                                                    if t["key"] == "mlflow.parentRunId"), None) for r in runs}
            stages = [r for r in runs if r["info"]["run_name"] in STAGES and parent_of[r["info"]["run_id"]]]
            if not stages:
                raise RuntimeError(f"no stage runs in {run_dir / 'mlflow.db'}")
            parent = parent_of[stages[0]["info"]["run_id"]]
            stage = {r["info"]["run_name"]: r["info"] for r in stages if parent_of[r["info"]["run_id"]] == parent}
            exp = stages[0]["info"]["experiment_id"]
            shown = sum(r["info"]["experiment_id"] == exp for r in runs)
            _shoot(chromium, f"{page}/{exp}/runs?workflowType=machine_learning&orderByKey=attributes.%60Created%60"
                   "&orderByAsc=true", out / "ui-runs.png", max(900, min(2400, 330 + 33 * shown)), Path(tmp, "p1"))

            figure = next(((info, png) for name in ("evaluate", "teacher") if (info := stage.get(name))
                           and (png := _first_png(api, info["run_id"]))), None)
            if figure is None:
                print("no PNG logged by the evaluate or teacher run: ui-figure.png skipped", file=sys.stderr)
            else:
                info, png = figure
                _shoot(chromium, f"{page}/{exp}/runs/{info['run_id']}/artifacts/{png}?workflowType=machine_learning",
                       out / "ui-figure.png", 900, Path(tmp, "p2"))

            reports = (run_dir / "evaluate" / "report.md", run_dir / "results.md")  # a run folder, a benchmark folder
            report = next((p for p in reports if p.is_file()), None)
            if report is None:
                print(f"no evaluate/report.md or results.md in {run_dir}: report.png skipped", file=sys.stderr)
            else:
                page_file = Path(tmp, "report.html")
                page_file.write_text(render_report(report), encoding="utf-8")
                height = 1600 if _IMAGE.search(report.read_text(encoding="utf-8")) else 900  # figures below the table
                _shoot(chromium, page_file.as_uri(), out / "report.png", height, Path(tmp, "p3"))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)


def main() -> int:
    """Parse the command line, check RUN_DIR and chromium, write the screenshots; 2 on an expected error."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a run folder of `gfkd run` or the benchmark folder of `gfkd benchmark`")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder for the PNGs (default docs/img)")
    p.add_argument("--port", type=int, default=0, help="port of the MLflow UI on 127.0.0.1 (0: a free one)")
    args = p.parse_args()
    run_dir = args.run_dir.resolve()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        if not (run_dir / "mlflow.db").is_file():
            raise RuntimeError(f"no mlflow.db in {run_dir}: pass a run folder of `gfkd run` or a benchmark folder")
        if chromium is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        screenshots(run_dir, args.out, args.port, chromium)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
