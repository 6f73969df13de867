"""PostgreSQL connections for the PostgreSQL stores (access log, consent registry): where, how, and secrecy.

A ``PostgresTarget`` is a DSN and a schema. The DSN may hold a password, so it never appears in a ``repr``, a
log line or an error message: ``describe`` names the server without credentials, and ``DatabaseUnavailable``
carries the driver's message with the password and the DSN blanked out. Every connection works inside the
target's schema (its ``search_path``), in autocommit mode: a store opens its transactions explicitly.

Advisory-lock keys (``lock_key``) are derived from the schema and a purpose, so two logs in two schemas of
one database never wait for each other.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the driver is imported when a connection is made: settings load without it
    import psycopg
    from psycopg import sql
    from psycopg_pool import AsyncConnectionPool

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
DEFAULT_SCHEMA = "anss_gateway"


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long the gateway waits for PostgreSQL (``[storage]`` in gateway.toml; each default written here, once).

    ``connect_timeout_s`` bounds a new connection (libpq counts whole seconds, at least 2; the health probe and
    ping also bound it themselves), ``pool_wait_s`` a request waiting for a pooled connection. The health of
    the access log's database (``gateway.audit.health``): a ping before administrations are asked waits at most
    ``ping_timeout_s`` and is skipped when the database answered within ``health_fresh_s``; while it is down, a
    probe tries a fresh connection every ``probe_interval_s``."""

    connect_timeout_s: float = 2.0
    pool_wait_s: float = 5.0
    ping_timeout_s: float = 0.5
    health_fresh_s: float = 0.0  # 0: every verification pings (one ping shared by the requests meanwhile)
    probe_interval_s: float = 1.0

    @property
    def libpq_connect_timeout(self) -> int:
        return max(2, math.ceil(self.connect_timeout_s))


DEFAULT_TIMEOUTS = DatabaseTimeouts()


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached or refused us; the message never holds the DSN or a password."""


def check_dsn(dsn: str) -> dict[str, Any]:
    """The DSN's parts; ``ValueError`` (without echoing any of it) if it is not a PostgreSQL DSN."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        raise ValueError("not a PostgreSQL connection string (key=value pairs or a postgresql:// URI)") from None
    return parts


@dataclass(frozen=True)
class PostgresTarget:
    """Where a store lives: a database (``dsn``, secret) and a schema in it."""

    dsn: str = field(repr=False)
    schema: str = DEFAULT_SCHEMA
    timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS

    def __post_init__(self) -> None:
        if not SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(f"schema {self.schema!r}: 1 to 63 of a-z 0-9 _, not starting with a digit")
        check_dsn(self.dsn)

    def __repr__(self) -> str:
        return f"PostgresTarget({self.describe()})"

    def describe(self) -> str:
        """The server, database and schema, for people: never the user's password."""
        parts = check_dsn(self.dsn)
        host = parts.get("host") or parts.get("hostaddr") or "localhost"
        port = parts.get("port") or "5432"
        return f"PostgreSQL {host}:{port}/{parts.get('dbname') or parts.get('user') or '?'}, schema {self.schema}"

    def redact(self, text: str) -> str:
        """``text`` with the DSN and its password blanked out."""
        password = str(check_dsn(self.dsn).get("password") or "")
        for secret in sorted({self.dsn, password} - {""}, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def unavailable(self, exc: BaseException, doing: str) -> DatabaseUnavailable:
        reason = self.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return DatabaseUnavailable(f"{doing} ({self.describe()}): {reason}")

    def lock_key(self, purpose: str) -> int:
        """A 64-bit advisory-lock key for ``purpose`` in this schema."""
        digest = hashlib.sha256(f"anss-gateway:{self.schema}:{purpose}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def search_path(self) -> sql.Composed:
        from psycopg import sql

        return sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema))

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """One connection of its own (autocommit, in the schema): for a lock held for the session."""
        import psycopg

        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True,
                                                         connect_timeout=self.timeouts.libpq_connect_timeout)
        except psycopg.Error as exc:
            raise self.unavailable(exc, "cannot connect to the database") from None
        await conn.execute(self.search_path())
        return conn

    def connect_sync(self) -> psycopg.Connection[Any]:
        """A blocking connection (autocommit, in the schema), for commands and worker threads."""
        import psycopg

        try:
            conn = psycopg.Connection.connect(self.dsn, autocommit=True,
                                              connect_timeout=self.timeouts.libpq_connect_timeout)
        except psycopg.Error as exc:
            raise self.unavailable(exc, "cannot connect to the database") from None
        conn.execute(self.search_path())
        return conn

    def pool(self, name: str, max_size: int, session: Mapping[str, str] | None = None
             ) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """A pool of connections in the schema, with ``session`` settings (not opened yet: ``open_pool``).
        Each connection is checked when taken (a server restart costs no request), and a request waits at most
        ``timeouts.pool_wait_s`` for one."""
        from psycopg import sql
        from psycopg_pool import AsyncConnectionPool

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(self.search_path())
            for key, value in (session or {}).items():
                await conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(sql.Literal(key),
                                                                                      sql.Literal(value)))

        return AsyncConnectionPool(self.dsn, min_size=1, max_size=max_size, open=False, name=name,
                                   timeout=self.timeouts.pool_wait_s,
                                   kwargs={"autocommit": True,
                                           "connect_timeout": self.timeouts.libpq_connect_timeout},
                                   configure=configure, check=AsyncConnectionPool.check_connection)

    async def open_pool(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> None:
        try:
            await pool.open(wait=True, timeout=self.timeouts.libpq_connect_timeout * 2)
        except Exception as exc:
            await pool.close()
            raise self.unavailable(exc, "cannot open a pool of connections to the database") from None


async def in_ddl_lock(target: PostgresTarget, conn: psycopg.AsyncConnection[Any],
                      create: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]) -> None:
    """Run ``create`` in one transaction holding the schema's DDL lock, with the schema created first: several
    processes (replicas, commands) may start at once, and only one may create tables, functions, triggers."""
    from psycopg import sql

    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (target.lock_key("ddl"),))
        row = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (target.schema,))).fetchone()
        if row is None:
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target.schema)))
        await create(conn)
