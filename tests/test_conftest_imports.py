"""Test modules import helpers from conftest as `conftest` (the module pytest loaded), never as `tests.conftest`:
that name runs conftest.py a second time, which nests the session's TMPDIR one level deeper for every later test of
the process (chromium then refused its socket path as too long in the clean-clone CI)."""
from pathlib import Path


def test_no_test_module_imports_conftest_under_a_second_name():
    tests = Path(__file__).parent
    offenders = [str(p.relative_to(tests)) for p in tests.rglob("*.py")
                 if p.name != Path(__file__).name and "tests.conftest" in p.read_text()]
    assert not offenders, offenders
