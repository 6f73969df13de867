"""The embedded consent registry: one SQLite file (``consents.sqlite3`` under ``state_dir``).

Writes (grants, revocations) and listings run on one dedicated thread, like the access log. The lookup each
consent-based request makes (``find_valid``) is one indexed ``SELECT`` on the event loop, on a read-only
connection that never waits for a lock (``busy_timeout`` 0), under ``gateway.stores.on_loop``'s guard:
when the file is busy, or a lookup was slow lately (pages read from the disk), it runs on the thread
instead. Nothing is cached: each lookup reads the file, and WAL mode with ``synchronous=FULL`` and a
``busy_timeout`` lets several processes (gateway replicas on one host, the ``consent`` CLI) share it — a
revocation written by one holds for all of them from the next lookup on.

A trigger keeps consents as recorded: the only change SQL may make to a row is to revoke it, once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.policy.consent.store import (
    Consent,
    ConsentGrant,
    Refusal,
    Revocation,
    check_reason,
    decide,
    timestamp,
)
from gateway.stores.files import open_sqlite
from gateway.stores.on_loop import LoopConnection, LoopGuard

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    consent_id TEXT PRIMARY KEY,
    citizen TEXT NOT NULL,
    grantee TEXT NOT NULL,
    purpose TEXT NOT NULL,
    checks TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    evidence TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    request_id TEXT,
    revoked_at TEXT,
    revoked_reason TEXT,
    revoked_by TEXT
);
CREATE INDEX IF NOT EXISTS consents_by_citizen ON consents (citizen, grantee, purpose);
CREATE TRIGGER IF NOT EXISTS consents_revoke_only BEFORE UPDATE ON consents
WHEN OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL OR NEW.revoked_reason IS NULL
  OR NEW.revoked_by IS NULL OR NEW.consent_id IS NOT OLD.consent_id OR NEW.citizen IS NOT OLD.citizen
  OR NEW.grantee IS NOT OLD.grantee OR NEW.purpose IS NOT OLD.purpose OR NEW.checks IS NOT OLD.checks
  OR NEW.valid_from IS NOT OLD.valid_from OR NEW.valid_until IS NOT OLD.valid_until
  OR NEW.evidence IS NOT OLD.evidence OR NEW.granted_by IS NOT OLD.granted_by
  OR NEW.created_at IS NOT OLD.created_at OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'a consent is never edited; it can only be revoked, once'); END;
"""

COLUMNS = ("consent_id, citizen, grantee, purpose, checks, valid_from, valid_until, evidence, granted_by, "
           "created_at, request_id, revoked_at, revoked_reason, revoked_by")


def _candidates(conn: sqlite3.Connection, citizen: str, grantee: str, purpose: str) -> list[Consent]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM consents WHERE citizen = ? AND grantee = ? AND purpose = ?",
                        (citizen, grantee, purpose)).fetchall()
    return [_consent(r) for r in rows]


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def _consent(row: Sequence[Any]) -> Consent:
    (consent_id, citizen, grantee, purpose, checks, valid_from, valid_until, evidence, granted_by, created_at,
     request_id, revoked_at, revoked_reason, revoked_by) = row
    return Consent(
        consent_id=consent_id, citizen=citizen, grantee=grantee, purpose=purpose,
        checks=tuple(json.loads(checks)), valid_from=datetime.fromisoformat(valid_from),
        valid_until=datetime.fromisoformat(valid_until), evidence=evidence, granted_by=granted_by,
        created_at=datetime.fromisoformat(created_at), request_id=request_id, revoked_at=_time(revoked_at),
        revoked_reason=revoked_reason, revoked_by=revoked_by,
    )


class SqliteConsentStore:
    """See the module docstring. ``open`` before use, ``close`` after."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000, on_loop: LoopGuard | None = None) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consents")
        self._conn: sqlite3.Connection | None = None
        self._lookups: LoopConnection | None = None  # the event loop's, read-only
        self._on_loop = on_loop if on_loop is not None else LoopGuard("consent_registry")
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise RuntimeError("the consent store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("open() the consent store first")
        return self._conn

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self._conn is not None:
            return
        self._conn = open_sqlite(self.path, SCHEMA, self._busy_timeout_ms)
        self._lookups = LoopConnection(self.path, self._on_loop, ("query_only=1",))

    async def grant(self, grant: ConsentGrant) -> Consent:
        consent = Consent.new(grant)
        await self._run(self._insert, consent)
        return consent

    def _insert(self, c: Consent) -> None:
        self._db().execute(
            f"INSERT INTO consents ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
            (c.consent_id, c.citizen, c.grantee, c.purpose, json.dumps(list(c.checks)), timestamp(c.valid_from),
             timestamp(c.valid_until), c.evidence, c.granted_by, timestamp(c.created_at), c.request_id),
        )

    async def revoke(self, consent_id: str, reason: str, revoked_by: str,
                     at: datetime | None = None) -> Revocation | None:
        check_reason(reason)
        if not revoked_by:
            raise ValueError("revoked_by is required")
        moment = timestamp(at or datetime.now(UTC))
        return await self._run(self._revoke, consent_id, reason, revoked_by, moment)

    def _revoke(self, consent_id: str, reason: str, revoked_by: str, moment: str) -> Revocation | None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            changed = db.execute(
                "UPDATE consents SET revoked_at = ?, revoked_reason = ?, revoked_by = ? "
                "WHERE consent_id = ? AND revoked_at IS NULL", (moment, reason, revoked_by, consent_id),
            ).rowcount == 1
            row = db.execute(f"SELECT {COLUMNS} FROM consents WHERE consent_id = ?", (consent_id,)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return Revocation(_consent(row), changed) if row is not None else None

    async def get(self, consent_id: str) -> Consent | None:
        return await self._run(self._get, consent_id)

    def _get(self, consent_id: str) -> Consent | None:
        row = self._db().execute(f"SELECT {COLUMNS} FROM consents WHERE consent_id = ?", (consent_id,)).fetchone()
        return _consent(row) if row is not None else None

    async def list_for(self, citizen: str) -> list[Consent]:
        return await self._run(self._list_for, citizen)

    def _list_for(self, citizen: str) -> list[Consent]:
        rows = self._db().execute(
            f"SELECT {COLUMNS} FROM consents WHERE citizen = ? ORDER BY created_at, consent_id", (citizen,)
        ).fetchall()
        return [_consent(r) for r in rows]

    async def find_valid(self, citizen: str, grantee: str, purpose: str, at: datetime,
                         checks: Sequence[str] = ()) -> Consent | Refusal:
        lookups = None if self._closed else self._lookups
        candidates = (lookups.run(lambda conn: _candidates(conn, citizen, grantee, purpose))
                      if lookups is not None else None)
        if candidates is None:  # (the thread looks it up)
            candidates = await self._run(lambda: _candidates(self._db(), citizen, grantee, purpose))
        return decide(candidates, at, checks)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._lookups is not None:
            self._lookups.close()
            self._lookups = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
