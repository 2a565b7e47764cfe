"""Every script in benchmarks/ keeps its temp files (PyG writes a compiled template when imported) out of TMPDIR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_script_moves_its_temp_dir_before_importing_pyg(script):
    text = script.read_text()
    first_pyg = min((i for i in (text.find("torch_geometric"), text.find("\nfrom gfkd"), text.find("\nimport torch"))
                     if i >= 0), default=len(text))
    assert 0 <= text.find("private_tmp_until_exit()") < first_pyg, script.name


def test_a_script_leaves_an_empty_tmpdir_empty(tmp_path):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy_by_size.py"), "--help"], cwd=tmp_path,
                       env={**os.environ, "TMPDIR": str(system_tmp)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "usage" in r.stdout, r.stderr[-2000:]
    assert not list(system_tmp.iterdir()), sorted(p.name for p in system_tmp.iterdir())


def test_every_benchmark_script_imports_its_own_checkout():
    """Run from another clone, a script used to import `flows` (and so `gfkd`) from the editable install before it put
    its own checkout on sys.path: the numbers were another tree's."""
    from pathlib import Path

    for script in sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")):
        text = script.read_text()
        if "from flows" not in text and "import gfkd" not in text and "from gfkd" not in text:
            continue
        first_import = min(i for i in (text.find("from flows"), text.find("from gfkd"), text.find("import gfkd")) if i >= 0)
        insert = text.find("sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))")
        assert 0 <= insert < first_import, f"{script.name}: put the checkout on sys.path before importing flows/gfkd"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_name_a_script_imports_from_the_project_exists(script):
    """Most scripts import inside functions, which `--help` never reaches: a name moved to another module (as
    `GENERATORS` did, from gfkd.stages.generate to gfkd.stages.chunks) broke a script with no test noticing."""
    import ast
    import importlib
    import importlib.util

    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("gfkd", "flows", "tasks"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), \
                    f"{script.name}: from {node.module} import {alias.name}"
