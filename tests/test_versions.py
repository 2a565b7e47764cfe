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
