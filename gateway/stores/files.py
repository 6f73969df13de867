"""Files the gateway keeps for itself: the state directory (usable or a one-line error naming it), development keys
and secrets created once under it, and the small SQLite stores (replay cache, consent registry)."""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from pathlib import Path

from gateway.config.toml import ConfigError

STATE_DIR_SETTING = "[gateway] state_dir in gateway.toml, or ANSS_GATEWAY_STATE_DIR"


def ensure_state_dir(path: Path) -> None:
    """Create the state directory if it is missing and prove that files can be written in it; otherwise a
    ``ConfigError`` of one line naming the directory and the setting, instead of a traceback from whichever
    file happened to be written first."""
    where = f"the state directory {path} ({STATE_DIR_SETTING})"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{where} is missing and cannot be created: {exc.strerror or type(exc).__name__}") from exc
    probe = path / f".write-probe.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{where} is not writable: {exc.strerror or type(exc).__name__}") from exc


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
