"""Files the gateway keeps for itself: development keys and secrets created once under the state directory, and
the small SQLite stores (replay cache, consent registry)."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path


def create_once(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` (mode 0600) unless the file exists.

    Whole or not at all: the bytes go to a private draft first, which is then linked into place, so a process
    never reads a half-written file, and when several processes start at once the first link wins and everyone
    keeps that one."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def open_sqlite(path: Path, schema: str, busy_timeout_ms: float) -> sqlite3.Connection:
    """A durable SQLite file for a small store (WAL, ``synchronous=FULL``, autocommit; waits up to
    ``busy_timeout_ms`` for another process's write lock), its ``schema`` script applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn
