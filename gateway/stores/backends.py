"""Which stores hold the access log and the consent registry, per ``[storage]`` in config/gateway.toml.

``backend = "sqlite"`` (the default): the embedded files under the state directory, for one host.
``backend = "postgres"``: one PostgreSQL schema shared by every replica and every command. The gateway
(``app``), the ``audit`` and ``consent`` commands all pick their stores here, so they always agree.

``log_location`` is the access log as the commands see it — where it is, whether it exists, verifying it,
its status, a store on it — whatever the backend. Drivers are imported only when a backend is used.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.audit.sqlite.tree import LogStatus
from gateway.audit.store import AccessLog, ChainBreak
from gateway.config.settings import ConfigError, Settings
from gateway.crypto.keys import PublicKey
from gateway.policy.consent.store import ConsentStore
from gateway.stores.postgres import DatabaseUnavailable, PostgresTarget

TrustedKeys = Callable[[], Mapping[str, PublicKey]]


def postgres_target(settings: Settings) -> PostgresTarget:
    if settings.database is None:
        raise ConfigError("[storage] backend 'postgres' has no DSN (`dsn_file` or ANSS_GATEWAY_DATABASE_DSN)")
    return settings.database


def uses_postgres(settings: Settings) -> bool:
    return settings.storage_backend == "postgres"


def access_log(settings: Settings, *, trusted_keys: TrustedKeys | None = None) -> AccessLog:
    """The configured access log (not opened yet)."""
    if uses_postgres(settings):
        from gateway.audit.postgres.store import PostgresAccessLog

        return PostgresAccessLog(postgres_target(settings), trusted_keys=trusted_keys)
    from gateway.audit.sqlite.store import SqliteAccessLog

    return SqliteAccessLog(settings.audit_database, trusted_keys=trusted_keys)


def consent_store(settings: Settings) -> ConsentStore:
    """The configured consent registry (not opened yet)."""
    if uses_postgres(settings):
        from gateway.policy.consent.postgres import PostgresConsentStore

        return PostgresConsentStore(postgres_target(settings))
    from gateway.policy.consent.sqlite import SqliteConsentStore

    return SqliteConsentStore(settings.consent_store_path)


def store_errors(settings: Settings) -> tuple[type[BaseException], ...]:
    """What a store of the configured backend raises when its database fails (for commands to report)."""
    if uses_postgres(settings):
        import psycopg

        return OSError, DatabaseUnavailable, psycopg.Error
    return OSError, sqlite3.Error


class LogLocation(Protocol):
    """The access log as a command sees it."""

    @property
    def name(self) -> str: ...

    def exists(self) -> bool: ...

    def verify(self, keys: Mapping[str, PublicKey]) -> ChainBreak | None: ...

    def status(self) -> LogStatus: ...

    def roots(self, sizes: Iterable[int]) -> dict[int, bytes]:
        """The stored tree root of each size the log holds (``tree_root`` of entry ``size - 1``): after
        ``verify`` found nothing, the recomputed roots. Sizes it does not hold are left out."""
        ...

    def entry(self, index: int) -> bytes | None:
        """The stored bytes of one entry (``None`` if absent or pruned)."""
        ...

    def checkpoints(self) -> list[tuple[int, str]]:
        """The (size, signed note) pairs of the log's ``checkpoints`` table, by size."""
        ...

    def store(self) -> AccessLog: ...


@dataclass(frozen=True)
class SqliteLocation:
    path: Path

    @property
    def name(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def verify(self, keys: Mapping[str, PublicKey]) -> ChainBreak | None:
        from gateway.audit.sqlite.store import verify_database

        return verify_database(self.path, keys)

    def status(self) -> LogStatus:
        from gateway.audit.sqlite.store import database_status

        return database_status(self.path)

    def roots(self, sizes: Iterable[int]) -> dict[int, bytes]:
        from gateway.audit.sqlite.tree import stored_roots

        return stored_roots(self.path, sizes)

    def entry(self, index: int) -> bytes | None:
        from gateway.audit.sqlite.tree import stored_entry

        return stored_entry(self.path, index)

    def checkpoints(self) -> list[tuple[int, str]]:
        from gateway.audit.sqlite.tree import stored_checkpoints

        return stored_checkpoints(self.path)

    def store(self) -> AccessLog:
        from gateway.audit.sqlite.store import SqliteAccessLog

        return SqliteAccessLog(self.path)


@dataclass(frozen=True)
class PostgresLocation:
    target: PostgresTarget

    @property
    def name(self) -> str:
        return self.target.describe()

    def exists(self) -> bool:
        from gateway.audit.postgres.tree import log_exists

        return log_exists(self.target)

    def verify(self, keys: Mapping[str, PublicKey]) -> ChainBreak | None:
        from gateway.audit.postgres.tree import verify_postgres

        return verify_postgres(self.target, keys)

    def status(self) -> LogStatus:
        from gateway.audit.postgres.tree import postgres_status

        return postgres_status(self.target)

    def roots(self, sizes: Iterable[int]) -> dict[int, bytes]:
        from gateway.audit.postgres.tree import stored_roots

        return stored_roots(self.target, sizes)

    def entry(self, index: int) -> bytes | None:
        from gateway.audit.postgres.tree import stored_entry

        return stored_entry(self.target, index)

    def checkpoints(self) -> list[tuple[int, str]]:
        from gateway.audit.postgres.tree import stored_checkpoints

        return stored_checkpoints(self.target)

    def store(self) -> AccessLog:
        from gateway.audit.postgres.store import PostgresAccessLog

        return PostgresAccessLog(self.target)


def log_location(settings: Settings, database: Path | None = None) -> LogLocation:
    """The configured access log, or the SQLite file ``database`` when one is named."""
    if database is None and uses_postgres(settings):
        return PostgresLocation(postgres_target(settings))
    return SqliteLocation(database or settings.audit_database)
