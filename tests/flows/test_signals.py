"""flows/signals.py: the line `gfkd run` and `gfkd benchmark` print when Ctrl-C or SIGTERM stops them."""

import os
import signal
import subprocess
import sys
import textwrap


def _stopped(tmp_path, forced: tuple[str, ...], kept: str | None = None,
             scratch: str | None = None) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from flows.signals import exit_on_signals
        scratch = None if {scratch!r} is None else Path({scratch!r})
        with exit_on_signals(Path({str(tmp_path)!r}), {forced!r}, {kept!r}, scratch=scratch):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_the_stop_line_says_how_to_resume(tmp_path):
    r = _stopped(tmp_path, ())
    assert r.returncode == 128 + signal.SIGTERM and r.stderr.strip() == (
        f"gfkd: stopped by SIGTERM: the finished stages and shards in {tmp_path} are kept; run the same command "
        "again to resume")


def test_under_force_the_stop_line_says_to_drop_it(tmp_path):
    """`--force STAGE` starts that stage over, its killed run's files discarded: the same command would not resume."""
    r = _stopped(tmp_path, ("generate",))
    assert r.returncode == 143 and "run it again without --force to resume (generate would start over with it)" in r.stderr


def test_a_benchmark_says_which_cells_are_kept(tmp_path):
    r = _stopped(tmp_path, (), f"the finished cells and stages in {tmp_path}")
    assert r.returncode == 143 and r.stderr.strip() == (
        f"gfkd: stopped by SIGTERM: the finished cells and stages in {tmp_path} are kept; run the same command again "
        "to resume")


def test_the_stop_removes_the_commands_scratch_folder(tmp_path):
    """The exit skips `scratch_tmp`'s cleanup (os._exit): the handler removes the run's `.tmp/` itself (a user audit
    found it left behind after every Ctrl-C)."""
    scratch = tmp_path / ".tmp"
    (scratch / "torchinductor_root").mkdir(parents=True)
    (scratch / "template.py").write_text("x")
    r = _stopped(tmp_path, (), scratch=str(scratch))
    assert r.returncode == 143 and not scratch.exists() and tmp_path.is_dir()
