"""The environment that keeps Prefect and MLflow inside one folder and quiet (no telemetry, no analytics)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from gfkd.errors import GfkdError
from gfkd.tracking import refusal


def local_env(prefect_home: Path, result_storage: Path) -> dict[str, str]:
    """Prefect's home (and its database) and result storage in the given folders; telemetry and analytics off."""
    return {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(result_storage),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def prefect_api_url(folder: Path | None = None) -> tuple[str | None, str]:
    """The Prefect API URL a command started in `folder` (default: the working folder) will use, and where it is set:
    $PREFECT_API_URL (exported, even empty), else PREFECT_API_URL in `folder/.env` (any case), `[api] url` of
    `folder/prefect.toml` or `[tool.prefect.api] url` of `folder/pyproject.toml`, which Prefect reads by itself
    (stack.md: a stray `.env` points the tests at a live server); else (None, ""). An unreadable file counts as none."""
    if "PREFECT_API_URL" in os.environ:
        return os.environ["PREFECT_API_URL"] or None, "$PREFECT_API_URL"
    folder = Path.cwd() if folder is None else folder
    if (folder / ".env").is_file():
        from dotenv import dotenv_values

        try:
            values = {k.upper(): v for k, v in dotenv_values(folder / ".env").items()}
        except (OSError, UnicodeDecodeError):
            values = {}
        if values.get("PREFECT_API_URL"):
            return values["PREFECT_API_URL"], str(folder / ".env")
    import tomllib

    for name, path in (("prefect.toml", ("api",)), ("pyproject.toml", ("tool", "prefect", "api"))):
        try:
            table = tomllib.loads((folder / name).read_text()) if (folder / name).is_file() else {}
            for part in path:
                table = table.get(part, {})
            url = table.get("url")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
            url = None
        if url:
            return str(url), str(folder / name)
    return None, ""


def check_prefect_api(timeout: float = 3.0, local_fallback: bool = True) -> None:
    """Fail in seconds when $PREFECT_API_URL names a server that does not accept connections (Prefect itself
    retries, then dies with a long traceback); unset, the run starts a temporary local server in its folder.
    `local_fallback=False` (`gfkd serve`, which needs a lasting server): the fix offered is only to start one.

    Raises:
        GfkdError: naming the URL and the fix.
    """
    url, source = prefect_api_url()
    if not url:
        return
    where = "" if source == "$PREFECT_API_URL" else f" (set in {source}, which Prefect reads)"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GfkdError(f"PREFECT_API_URL={url}{where} is not an http(s) URL: set it like http://127.0.0.1:4200/api"
                        + ((", or unset it" if not where else f", or remove it from {source}") if local_fallback else ""))
    why = refusal(url, timeout)
    if why:
        unset = "unset PREFECT_API_URL" if not where else f"remove it from {source}"
        raise GfkdError(f"Prefect API {url}{where} is unreachable ({why}): start it (prefect server start)"
                        + (f" or {unset} to run on a temporary local server" if local_fallback else ""))


def check_prefect_home(default_home: Path) -> str | None:
    """Before Prefect starts: its home ($PREFECT_HOME, else `default_home`, the run folder's) must be a folder (a
    one-line error, instead of Prefect's server restarting for two minutes in tracebacks), and its database sound. A
    damaged `prefect.db` (it holds only Prefect's run history: results and caches live in the run folder) is moved
    aside to `prefect.db.damaged`, with its journal files, so the temporary server starts on a fresh one; the returned
    note says so (None: nothing done). Only damage SQLite is sure of counts (`sqlite_damage`: a locked database or a
    hot journal is not). Skipped where Prefect uses a server ($PREFECT_API_URL) or a database URL of its own.

    Raises:
        GfkdError: naming PREFECT_HOME or the file, and the fix.
    """
    from gfkd.io.sqlite_check import sqlite_damage

    home = Path(os.environ.get("PREFECT_HOME") or default_home).expanduser()
    if home.exists() and not home.is_dir():
        raise GfkdError(f"PREFECT_HOME={home} is not a folder: point it at a folder, or unset it to keep Prefect's "
                        "files in the run folder")
    if prefect_api_url()[0] or any(os.environ.get(k) for k in ("PREFECT_API_DATABASE_CONNECTION_URL",
                                                              "PREFECT_SERVER_DATABASE_CONNECTION_URL")):
        return None
    db = home / "prefect.db"
    why = sqlite_damage(db) if db.is_file() else None
    if why is None:
        return None
    try:
        for suffix in ("", "-wal", "-shm", "-journal"):
            part = home / f"prefect.db{suffix}"
            if part.exists():
                part.replace(home / f"prefect.db.damaged{suffix}")
    except OSError as exc:
        raise GfkdError(f"Prefect's database {db} is damaged ({why}) and could not be moved aside ({exc.strerror}): "
                        "move it away and rerun") from exc
    return (f"Prefect's database {db} was damaged ({why}); moved to prefect.db.damaged, and Prefect starts a new "
            "one (it held only Prefect's run history)")


@contextmanager
def scratch_tmp(folder: Path, per_process: bool = False) -> Iterator[Path]:
    """Send this process's (and its children's) temporary files into `folder`, removed on exit; yields the folder.

    Libraries write there without asking: PyG compiles each MessagePassing layer's `propagate` from a Jinja template
    into a `delete=False` NamedTemporaryFile (GATConv leaves two .py files per process in /tmp), and Dask puts its
    worker scratch space under the temp dir. The run folder keeps them, and they are gone when the command ends.
    `per_process`: use `folder/<pid>` (removed, then `folder` if empty), for a command that enters it before it holds
    the folder's lock (`gfkd benchmark`, `gfkd serve`), so that a second one refused by the lock, or stopped, removes
    only its own.
    """
    own = folder / str(os.getpid()) if per_process else folder
    own.mkdir(parents=True, exist_ok=True)
    old_env, old_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(own.resolve())
    tempfile.tempdir = str(own.resolve())
    try:
        yield own
    finally:
        tempfile.tempdir = old_dir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env
        remove_scratch(own, folder if per_process else None)


def remove_scratch(own: Path, shared: Path | None = None) -> None:
    """Remove a command's scratch folder `own`, then `shared` (the `.tmp/` that holds it) if no other command's is left."""
    shutil.rmtree(own, ignore_errors=True)
    if shared is not None:
        try:
            shared.rmdir()
        except OSError:  # another command's folder is in it (or it is gone)
            pass


def private_tmp_until_exit(prefix: str = "gfkd-") -> Path:
    """This process's temp files in a fresh folder under the temp dir, removed when the process exits.

    For scripts without a run folder (benchmarks/): called before they import PyG, whose import alone writes a
    compiled template into the temp dir."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder
