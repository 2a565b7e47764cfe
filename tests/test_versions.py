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
