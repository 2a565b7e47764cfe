"""Whether an SQLite file (MLflow's run database, Prefect's) is damaged, read-only and without changing it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def sqlite_damage(path: Path) -> str | None:
    """What is wrong with SQLite file `path` ("file is not a database", quick_check's first complaint), or None when
    it is sound or SQLite cannot tell without a writer: locked by another process, no permission, or a hot journal
    (`<file>-journal`, left by a process killed mid-write, which the next writer's open rolls back). Only damage
    SQLite is sure of counts: a sound file is never reported."""
    path = Path(path)
    if Path(f"{path}-journal").exists():
        return None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)  # as_uri: % # ? escaped
    except sqlite3.Error:
        return None
    try:
        verdict = con.execute("PRAGMA quick_check").fetchone()[0]
        return None if verdict == "ok" else verdict.splitlines()[0][:80]
    except sqlite3.OperationalError:  # locked, unable to open, read-only: not damage
        return None
    except sqlite3.DatabaseError as exc:  # not a database, malformed
        return str(exc)
    finally:
        con.close()
