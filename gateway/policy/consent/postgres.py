"""The consent registry on PostgreSQL: one table shared by every gateway replica and the ``consent`` commands.

Nothing is cached: every lookup reads the table, so a revocation committed by one process holds for every
other one from its next lookup on (``find_valid`` is one indexed query). Revoking is one conditional
``UPDATE`` (``WHERE revoked_at IS NULL``): of two concurrent revocations exactly one changes the consent, the
other finds it revoked. A trigger keeps consents as recorded: the only change SQL may make to a row is to
revoke it, once. The table lives in the configured schema, beside the access log.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway.policy.consent.store import Consent, ConsentGrant, Refusal, Revocation, check_reason, decide, utc
from gateway.stores.postgres import PostgresTarget, in_ddl_lock

Conn = psycopg.AsyncConnection[Any]
COLUMNS = ("consent_id, citizen, grantee, purpose, checks, valid_from, valid_until, evidence, granted_by, "
           "created_at, request_id, revoked_at, revoked_reason, revoked_by")

SCHEMA = (
    """CREATE TABLE consents (
        consent_id text PRIMARY KEY,
        citizen text NOT NULL,              -- pseudonym of the citizen's IDCS
        grantee text NOT NULL,
        purpose text NOT NULL,
        checks text[] NOT NULL,             -- in the order granted
        valid_from timestamptz NOT NULL,
        valid_until timestamptz NOT NULL,
        evidence text NOT NULL,
        granted_by text NOT NULL,
        created_at timestamptz NOT NULL,
        request_id text,
        revoked_at timestamptz,
        revoked_reason text,
        revoked_by text
    )""",
    "CREATE INDEX consents_by_citizen ON consents (citizen, grantee, purpose)",
    """CREATE FUNCTION consents_revoke_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL OR NEW.revoked_reason IS NULL
           OR NEW.revoked_by IS NULL OR (NEW.consent_id, NEW.citizen, NEW.grantee, NEW.purpose, NEW.checks,
           NEW.valid_from, NEW.valid_until, NEW.evidence, NEW.granted_by, NEW.created_at, NEW.request_id)
           IS DISTINCT FROM (OLD.consent_id, OLD.citizen, OLD.grantee, OLD.purpose, OLD.checks, OLD.valid_from,
           OLD.valid_until, OLD.evidence, OLD.granted_by, OLD.created_at, OLD.request_id) THEN
            RAISE EXCEPTION 'a consent is never edited; it can only be revoked, once';
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER consents_revoke_only BEFORE UPDATE ON consents FOR EACH ROW "
    "EXECUTE FUNCTION consents_revoke_only()",
)


def _consent(row: Sequence[Any]) -> Consent:
    (consent_id, citizen, grantee, purpose, checks, valid_from, valid_until, evidence, granted_by, created_at,
     request_id, revoked_at, revoked_reason, revoked_by) = row
    return Consent(
        consent_id=consent_id, citizen=citizen, grantee=grantee, purpose=purpose, checks=tuple(checks),
        valid_from=utc(valid_from), valid_until=utc(valid_until), evidence=evidence, granted_by=granted_by,
        created_at=utc(created_at), request_id=request_id, revoked_at=utc(revoked_at) if revoked_at else None,
        revoked_reason=revoked_reason, revoked_by=revoked_by,
    )


class PostgresConsentStore:
    """See the module docstring. ``open`` before use, ``close`` after."""

    def __init__(self, target: PostgresTarget, *, pool_size: int = 4) -> None:
        self.target = target
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._closed = False

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        if self._closed:
            raise RuntimeError("the consent store is closed")
        if self._pool is None:
            raise RuntimeError("open() the consent store first")
        return self._pool.connection()

    async def open(self) -> None:
        if self._pool is not None:
            return
        conn = await self.target.connect()
        try:
            await in_ddl_lock(self.target, conn, _create)
        finally:
            await conn.close()
        pool = self.target.pool("consents", self._pool_size)
        await self.target.open_pool(pool)
        self._pool = pool

    async def grant(self, grant: ConsentGrant) -> Consent:
        c = Consent.new(grant)
        async with self._connection() as conn:
            await conn.execute(
                f"INSERT INTO consents ({COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, NULL)",
                (c.consent_id, c.citizen, c.grantee, c.purpose, list(c.checks), c.valid_from, c.valid_until,
                 c.evidence, c.granted_by, c.created_at, c.request_id))
        return c

    async def revoke(self, consent_id: str, reason: str, revoked_by: str,
                     at: datetime | None = None) -> Revocation | None:
        check_reason(reason)
        if not revoked_by:
            raise ValueError("revoked_by is required")
        moment = utc(at or datetime.now(UTC))
        async with self._connection() as conn:
            row = await (await conn.execute(
                f"UPDATE consents SET revoked_at = %s, revoked_reason = %s, revoked_by = %s "
                f"WHERE consent_id = %s AND revoked_at IS NULL RETURNING {COLUMNS}",
                (moment, reason, revoked_by, consent_id))).fetchone()
            if row is not None:
                return Revocation(_consent(row), True)
            row = await (await conn.execute(f"SELECT {COLUMNS} FROM consents WHERE consent_id = %s",
                                            (consent_id,))).fetchone()
        return Revocation(_consent(row), False) if row is not None else None

    async def get(self, consent_id: str) -> Consent | None:
        async with self._connection() as conn:
            row = await (await conn.execute(f"SELECT {COLUMNS} FROM consents WHERE consent_id = %s",
                                            (consent_id,))).fetchone()
        return _consent(row) if row is not None else None

    async def list_for(self, citizen: str) -> list[Consent]:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {COLUMNS} FROM consents WHERE citizen = %s ORDER BY created_at, consent_id",
                (citizen,))).fetchall()
        return [_consent(r) for r in rows]

    async def find_valid(self, citizen: str, grantee: str, purpose: str, at: datetime,
                         checks: Sequence[str] = ()) -> Consent | Refusal:
        async with self._connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {COLUMNS} FROM consents WHERE citizen = %s AND grantee = %s AND purpose = %s",
                (citizen, grantee, purpose))).fetchall()
        return decide([_consent(r) for r in rows], at, checks)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _create(conn: Conn) -> None:
    found = await (await conn.execute("SELECT to_regclass('consents') IS NOT NULL")).fetchone()
    if not found or not found[0]:
        for statement in SCHEMA:
            await conn.execute(statement)
