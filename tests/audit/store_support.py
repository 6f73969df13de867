"""The access-log stores the contract suites run against, each test on a fresh, empty log.

``opened_stores(kind, tmp_path)`` gives ``new()``: each call opens one more instance on the *same* log —
another process on the same SQLite file, another replica on the same PostgreSQL schema — all closed at the
end (closing twice must be harmless). Instances trust ``KEY`` for tree-head signatures. To add an
implementation: add its name to ``IMPLEMENTATIONS`` and a branch here, then make the suites pass unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from gateway.audit import AccessLog, SqliteAccessLog
from gateway.audit.postgres.store import PostgresAccessLog
from gateway.crypto import keys
from gateway.crypto.keys import PublicKey
from tests.audit.pg_support import fresh_schema_async

StoreFactory = Callable[[], Awaitable[AccessLog]]
IMPLEMENTATIONS = ["sqlite", "postgres"]
KEY = keys.generate()
TRUSTED: dict[str, PublicKey] = {KEY.kid: KEY.public}
LOG_ID = "anss-gateway.access"


@asynccontextmanager
async def opened_stores(kind: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    async with AsyncExitStack() as stack:
        if kind == "sqlite":
            path = tmp_path / "access-log.sqlite3"

            def build() -> AccessLog:
                return SqliteAccessLog(path, trusted_keys=lambda: TRUSTED)
        elif kind == "postgres":
            target = await stack.enter_async_context(fresh_schema_async())

            def build() -> AccessLog:
                return PostgresAccessLog(target, trusted_keys=lambda: TRUSTED)
        else:
            raise ValueError(f"no factory for {kind}")

        async def new() -> AccessLog:
            store = build()
            stack.push_async_callback(store.close)  # closed before the schema is dropped (callbacks run LIFO)
            await store.open()
            return store

        yield new
