"""flows/env.py: Prefect's home and database checked before Prefect starts."""

import os
import sqlite3

import pytest

from flows.env import check_prefect_home
from gfkd.errors import GfkdError


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL",
                "PREFECT_SERVER_DATABASE_CONNECTION_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "run" / "prefect"  # the run folder's, as `gfkd run` passes it


def _database(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE flow_run (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO flow_run (name) VALUES (?)", [(f"run-{i}" * 50,) for i in range(2000)])
    con.close()


def test_a_prefect_home_that_is_a_file_is_a_one_line_error(home, monkeypatch, tmp_path):
    home.parent.mkdir(parents=True)
    home.write_text("not a folder")
    with pytest.raises(GfkdError, match=f"PREFECT_HOME={home} is not a folder: point it at a folder"):
        check_prefect_home(home)
    monkeypatch.setenv("PREFECT_HOME", str(home))  # the user's own, which wins over the run folder's
    with pytest.raises(GfkdError, match=f"PREFECT_HOME={home} is not a folder"):
        check_prefect_home(tmp_path / "elsewhere")


def test_a_sound_database_or_none_is_left_alone(home):
    assert check_prefect_home(home) is None  # no home yet: Prefect makes it
    _database(home / "prefect.db")
    before = (home / "prefect.db").read_bytes()
    assert check_prefect_home(home) is None
    assert (home / "prefect.db").read_bytes() == before


def test_a_sound_database_under_a_path_with_uri_characters_is_left_alone(tmp_path, monkeypatch):
    """`file:{path}` read %41 as 'A' and stopped at '#' or '?': a sound database was moved aside on every run."""
    for var in ("PREFECT_HOME", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    for name in ("x%41y", "a#b", "c?d"):
        home = tmp_path / name / "prefect"
        _database(home / "prefect.db")
        assert check_prefect_home(home) is None and (home / "prefect.db").is_file(), name


def test_a_locked_database_or_a_hot_journal_is_not_damage(home):
    """A writer holding the lock, or the journal of a process killed mid-write (the next writer rolls it back):
    SQLite cannot tell without a writer, so nothing is moved."""
    _database(home / "prefect.db")
    writer = sqlite3.connect(home / "prefect.db", timeout=0)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        assert check_prefect_home(home) is None
    finally:
        writer.rollback()
        writer.close()
    (home / "prefect.db-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + b"\0" * 504)
    assert check_prefect_home(home) is None and (home / "prefect.db").is_file()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_database_is_moved_aside_with_a_note(home, damage):
    """Prefect's server restarted for two minutes in tracebacks on such a file; it holds only run history."""
    db = home / "prefect.db"
    _database(db)
    if damage == "truncated":
        with open(db, "r+b") as fh:
            fh.truncate(db.stat().st_size // 3)
    else:
        db.write_bytes(b"\x00garbage" * 1000)
    (home / "prefect.db-wal").write_bytes(b"wal")
    note = check_prefect_home(home)
    assert note is not None and f"Prefect's database {db} was damaged" in note and "\n" not in note
    assert not db.exists() and (home / "prefect.db.damaged").is_file()
    assert (home / "prefect.db.damaged-wal").read_bytes() == b"wal"


@pytest.mark.parametrize("var, value", [("PREFECT_API_URL", "http://127.0.0.1:4200/api"),
                                        ("PREFECT_API_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:////tmp/other.db"),
                                        ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/prefect")])
def test_a_server_or_a_database_url_of_prefects_own_is_not_checked(home, monkeypatch, var, value):
    home.mkdir(parents=True)
    (home / "prefect.db").write_bytes(b"garbage" * 100)
    monkeypatch.setenv(var, value)
    assert check_prefect_home(home) is None and (home / "prefect.db").exists()


@pytest.mark.parametrize("name, text", [(".env", "PREFECT_API_URL=http://127.0.0.1:9/api\n"),
                                        (".env", "prefect_api_url=http://127.0.0.1:9/api\n"),
                                        ("prefect.toml", '[api]\nurl = "http://127.0.0.1:9/api"\n'),
                                        ("pyproject.toml", '[tool.prefect.api]\nurl = "http://127.0.0.1:9/api"\n')])
def test_a_prefect_api_in_a_file_of_the_working_folder_is_found_and_checked(tmp_path, monkeypatch, name, text):
    """stack.md: Prefect reads ./.env and ./prefect.toml by itself; gfkd checks that URL as it checks $PREFECT_API_URL
    and names the file."""
    import subprocess
    import sys

    from flows.env import check_prefect_api, prefect_api_url

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert prefect_api_url() == (None, "")
    (tmp_path / name).write_text(text)
    assert prefect_api_url() == ("http://127.0.0.1:9/api", str(tmp_path / name))
    with pytest.raises(GfkdError, match=rf"unreachable .*remove it from {tmp_path / name}"):
        check_prefect_api(timeout=1.0)
    probe = "from prefect.settings import get_current_settings; print(get_current_settings().api.url)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {"PREFECT_HOME": str(tmp_path / "h")}
    seen = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert seen.stdout.strip() == "http://127.0.0.1:9/api"  # what Prefect itself would use: the trap is real


def test_an_unreadable_dotenv_counts_as_none_and_an_exported_empty_url_wins(tmp_path, monkeypatch):
    from flows.env import prefect_api_url

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / ".env").write_bytes(b"\xff\xfe not text")
    (tmp_path / "prefect.toml").write_text("[api\n")  # not TOML
    assert prefect_api_url(tmp_path) == (None, "")
    (tmp_path / ".env").write_text("PREFECT_API_URL=http://127.0.0.1:9/api\n")
    monkeypatch.setenv("PREFECT_API_URL", "")
    assert prefect_api_url(tmp_path) == (None, "$PREFECT_API_URL")  # as Prefect: the exported value wins
