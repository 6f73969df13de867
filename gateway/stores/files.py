"""Files the gateway keeps for itself: development keys and secrets created once under the state directory, and
the small SQLite stores (replay cache, consent registry)."""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
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
        switch_to_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


def switch_to_wal(conn: sqlite3.Connection, *, attempts: int = 50, pause_s: float = 0.02) -> None:
    """Put the file in WAL mode, waiting for other processes doing the same.

    Switching the journal mode needs a moment alone with the file and SQLite reports "database is locked" at once
    rather than honouring ``busy_timeout``, so processes opening one new file together retry here (one second in
    all by default) instead of failing at start-up."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(pause_s)
