"""The tests' network guard: refuse, and record, every connection that does not go to the loopback.

Installed in-process by tests/reliability/test_safe_defaults.py, and copied beside a `sitecustomize.py` by
tests/flows/test_cli.py so that every Python process of a `gfkd run` subprocess (Prefect's server, MLflow) loads it.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def install(record: Callable[[Any], None], set_attr: Callable[[Any, str, Any], None] = setattr) -> None:
    """Patch socket.socket.connect and connect_ex (with `set_attr`: pytest's monkeypatch.setattr undoes it)."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refused(sock: socket.socket, address: Any) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
            record(address)
            return True
        return False

    def guarded(sock: socket.socket, address: Any) -> None:
        if refused(sock, address):
            raise OSError(f"network access refused in tests: {address}")
        return connect(sock, address)

    def guarded_ex(sock: socket.socket, address: Any) -> int:
        return 111 if refused(sock, address) else connect_ex(sock, address)  # 111: ECONNREFUSED

    set_attr(socket.socket, "connect", guarded)
    set_attr(socket.socket, "connect_ex", guarded_ex)
