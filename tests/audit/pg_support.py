"""The real PostgreSQL server for the tests: a fresh schema per test, dropped after.

The server is ``postgresql://postgres@127.0.0.1:5432/test`` (``ANSS_GATEWAY_TEST_DATABASE_DSN`` overrides it).
Without it the PostgreSQL cases are skipped with a plain reason, except in CI (``CI`` set), where they fail:
CI must never pass by skipping (as ``tests/stores`` does for Redis).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

from gateway.stores.postgres import PostgresTarget

DSN = os.environ.get("ANSS_GATEWAY_TEST_DATABASE_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_MISSING = "PostgreSQL at 127.0.0.1:5432 (database test) is not running: PostgreSQL cases skipped"


def _unreachable(exc: Exception) -> NoReturn:
    if "CI" in os.environ:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable ({type(exc).__name__}); CI is set, and CI must "
                    "run the PostgreSQL suite, not skip it", pytrace=False)
    pytest.skip(PG_MISSING)


def _drop(schema: str) -> None:
    with psycopg.connect(DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def fresh_schema() -> Iterator[PostgresTarget]:
    """A target whose schema nobody else uses (the stores create it); dropped, with everything in it, after."""
    try:
        psycopg.connect(DSN, connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        _unreachable(exc)
    target = PostgresTarget(DSN, f"t_{uuid.uuid4().hex}")
    try:
        yield target
    finally:
        _drop(target.schema)


@asynccontextmanager
async def fresh_schema_async() -> AsyncIterator[PostgresTarget]:
    try:
        conn = await psycopg.AsyncConnection.connect(DSN, connect_timeout=2)
    except psycopg.OperationalError as exc:
        _unreachable(exc)
    await conn.close()
    target = PostgresTarget(DSN, f"t_{uuid.uuid4().hex}")
    try:
        yield target
    finally:
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True, connect_timeout=5) as conn:
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target.schema)))


def dba(target: PostgresTarget, *statements: str, disable_triggers: bool = True) -> None:
    """Run ``statements`` in the target's schema as its owner would, in one transaction — first disabling
    the user triggers of every table in it (which stop mistakes, not a database owner)."""
    with psycopg.connect(DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(target.search_path())
        with conn.transaction():
            if disable_triggers:
                tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                      (target.schema,)).fetchall()
                for (table,) in tables:
                    conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  # the tests' own SQL
