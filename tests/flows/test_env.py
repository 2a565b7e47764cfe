"""flows/env.py: Prefect's home and database checked before Prefect starts."""

import sqlite3

import pytest

from flows.env import check_prefect_home
from gfkd.errors import GfkdError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    return tmp_path / "prefect"


def _database(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE flow_run (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO flow_run (name) VALUES (?)", [(f"run-{i}" * 50,) for i in range(2000)])
    con.close()


def test_a_prefect_home_that_is_a_file_is_a_one_line_error(home):
    home.write_text("not a folder")
    with pytest.raises(GfkdError, match=f"PREFECT_HOME={home} is not a folder: point it at a folder"):
        check_prefect_home()


def test_a_sound_database_or_none_is_left_alone(home):
    assert check_prefect_home() is None  # no home yet: Prefect makes it
    _database(home / "prefect.db")
    before = (home / "prefect.db").read_bytes()
    assert check_prefect_home() is None
    assert (home / "prefect.db").read_bytes() == before


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
    note = check_prefect_home()
    assert note is not None and f"Prefect's database {db} was damaged" in note and "\n" not in note
    assert not db.exists() and (home / "prefect.db.damaged").is_file()
    assert (home / "prefect.db.damaged-wal").read_bytes() == b"wal"


def test_a_server_or_a_database_url_of_prefects_own_is_not_checked(home, monkeypatch):
    home.mkdir()
    (home / "prefect.db").write_bytes(b"garbage" * 100)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert check_prefect_home() is None and (home / "prefect.db").exists()
