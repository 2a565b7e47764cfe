"""The report renderer of benchmarks/screenshots.py (no browser): pipe tables become tables, images absolute URLs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("screenshots", REPO / "benchmarks" / "screenshots.py")
screenshots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshots)

REPORT = """# gfkd report: tiny

- dataset: TINY, fold 0

| row | test accuracy |
|---|---|
| teacher | 0.750 ± 0.000 (n=1) |
| `KD` <real> | — |

Data-free rows report the last epoch.

![acc_vs_time.png](acc_vs_time.png)
"""


def _cells(html: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", r, flags=re.S)]
            for r in rows]


def test_basic_markdown_renders_headings_lists_tables_and_escapes_text():
    html = screenshots.basic_markdown(REPORT)
    assert "<h1>gfkd report: tiny</h1>" in html and "<li>dataset: TINY, fold 0</li>" in html
    assert html.count("<table>") == 1 and "<th>row</th><th>test accuracy</th>" in html
    assert _cells(html) == [["row", "test accuracy"], ["teacher", "0.750 ± 0.000 (n=1)"], ["KD &lt;real&gt;", "—"]]
    assert "<code>KD</code>" in html and "<p>Data-free rows report the last epoch.</p>" in html
    assert '<img alt="acc_vs_time.png" src="acc_vs_time.png">' in html


@pytest.mark.parametrize("builtin", [True, False])
def test_report_page_has_the_table_and_images_as_absolute_file_urls(tmp_path, monkeypatch, builtin):
    if builtin:
        monkeypatch.setitem(sys.modules, "markdown", None)  # `import markdown` raises ImportError
    else:
        pytest.importorskip("markdown")
    (tmp_path / "evaluate").mkdir()
    report = tmp_path / "evaluate" / "report.md"
    report.write_text(REPORT + "![remote](https://example.org/x.png)\n", encoding="utf-8")
    html = screenshots.render_report(report)
    assert html.startswith("<!doctype html>") and "<style>" in html
    assert _cells(html)[:2] == [["row", "test accuracy"], ["teacher", "0.750 ± 0.000 (n=1)"]]
    src = (tmp_path / "evaluate" / "acc_vs_time.png").resolve().as_uri()
    assert src.startswith("file:///") and re.search(rf'<img alt="acc_vs_time.png" src="{re.escape(src)}"\s*/?>', html)
    assert 'src="https://example.org/x.png"' in html  # URLs with a scheme are left alone
