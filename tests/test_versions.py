"""gfkd/versions.py: the one line `gfkd --version` prints and the parent MLflow run is tagged with."""

from __future__ import annotations

import sys
from importlib.metadata import version

import gfkd
from gfkd import versions


def test_the_line_names_each_dependency_as_installed(monkeypatch):
    monkeypatch.setattr(versions, "DEPENDENCIES", ("torch", "gfkd-no-such-package"))
    line = versions.versions_line()
    assert line == (f"gfkd {gfkd.__version__} (torch {version('torch')}, gfkd-no-such-package not installed; "
                    f"Python {sys.version.split()[0]})")


def test_cpu_kernels_is_the_capability_torch_dispatches_to():
    import torch

    assert versions.cpu_kernels() == torch.backends.cpu.get_cpu_capability()
    assert versions.cpu_kernels() in torch.__config__.show()  # "CPU capability usage: AVX2"


def test_cpu_model_reads_the_model_name_or_falls_back(monkeypatch, tmp_path):
    import builtins
    import platform

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU @ 1.00GHz\nflags\t: fpu\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path,
                                                                           *a, **k))
    assert versions.cpu_model() == "Test CPU @ 1.00GHz"
    # a virtual machine's generic name: family and model tell its processors apart; only the first core is read
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                    "model name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: Other\n")
    assert versions.cpu_model() == "AMD EPYC (family 25, model 17)"
    info.unlink()  # no /proc/cpuinfo (macOS): what platform knows
    assert versions.cpu_model() == (platform.processor() or platform.machine())


def test_checkout_commit_names_the_commit_and_a_dirty_tree(tmp_path):
    import subprocess

    from gfkd.versions import checkout_commit

    assert checkout_commit(tmp_path) == "?"
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path,  # noqa: E731
                                    check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-qm", "a")
    short = git("rev-parse", "--short", "HEAD")
    assert checkout_commit(tmp_path) == short
    (tmp_path / "a.txt").write_text("b")
    assert checkout_commit(tmp_path) == f"{short} (with uncommitted changes)"


def test_the_installed_dependencies_satisfy_the_pins():
    """stack.md's pins (sqlalchemy < 2.1 for Prefect's scheduler, fastapi < 0.151 for its server, torch 2.13.0, ...)
    hold in the environment the suite runs in, not only in pyproject.toml."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    for dep in pyproject["project"]["dependencies"]:
        req = Requirement(dep)
        installed = version(req.name).split("+")[0]  # torch's local label, "+cpu"
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is outside {req.specifier}"
