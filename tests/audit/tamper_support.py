"""A production-configured gateway's access log for the tamperings (``test_tamperings.py``), on SQLite or
PostgreSQL, with what lies outside its database: the signing key in a configured file (not the state directory),
the checkpoint key, the high-water file and the checkpoint archive written by the real ``LogGuard``, and a real
witness on loopback that cosigned the published heads.

``Tamperer`` does what someone with write access to the database (not to the keys) can: SQL as the file's or
schema's owner (triggers dropped or disabled first), a truncation with the rows above the cut, and putting a
forged log — written by the real store code elsewhere — in the place of the real one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from gateway.audit import AccessLog, log_id_for
from gateway.audit import checkpoint as cp
from gateway.audit.postgres.aggregates import migrate_hourly
from gateway.audit.record import AccessRecord
from gateway.audit.sqlite.aggregates import build_hourly
from gateway.audit.witness.config import load_config
from gateway.audit.witness.guard import CheckpointArchive, LogGuard, load_checkpoint_key
from gateway.audit.witness.service import RunningWitness
from gateway.cli.main import main
from gateway.config.settings import DSN_ENV, Settings, load
from gateway.crypto import keys
from gateway.crypto.keyring import gateway_key_dir
from gateway.crypto.keys import SigningKey
from gateway.crypto.keystore import KeyStore
from gateway.stores import backends as storage
from gateway.stores.postgres import PostgresTarget
from tests.audit.pg_support import DSN, dba
from tests.audit.witness.support import running_witness

T = TypeVar("T")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
WITNESS = "cndp.ma/witness"
INDEX_TABLES = ("access_index", "access_index_checks", "access_index_sources", "access_index_persons")


def record(i: int, case: str | None = None) -> AccessRecord:
    """Entry ``i``; cases repeat every 16 entries (``CASE-0003`` is entries 3, 19, 35 ...)."""
    return AccessRecord(time=(T0 + timedelta(seconds=i)).isoformat(timespec="microseconds"),
                        request_id=f"req-{i:05d}", method="POST", path="/v1/verifications", status=200,
                        outcome="answered", latency_ms=2.5, client="anss.asd", purpose="asd.eligibility",
                        case_ref=case or f"CASE-{i % 16:04d}", checks=("identity", "household"),
                        subject=f"{i:064x}", sources=(("civil_registry", "ok"),))


class ProductionLog:
    """The log of a gateway configured for production in ``root``: ``root/secrets/signing.pem`` is its
    ``signing_key_file``; ``root/state`` its state directory (key store, checkpoint key, high water, archive)."""

    def __init__(self, root: Path, target: PostgresTarget | None = None) -> None:
        self.root, self.target = root, target
        self.state = root / "state"
        self.signing_key_file = root / "secrets" / "signing.pem"
        self.signing_key_file.parent.mkdir(parents=True, exist_ok=True)
        self.key: SigningKey = keys.load_or_create(self.signing_key_file)
        self.environment = {"ANSS_GATEWAY_STATE_DIR": str(self.state),
                            "ANSS_GATEWAY_SIGNING_KEY_FILE": str(self.signing_key_file)}
        if target is not None:
            self.environment |= {"ANSS_GATEWAY_STORAGE_BACKEND": "postgres", DSN_ENV: target.dsn,
                                 "ANSS_GATEWAY_DATABASE_SCHEMA": target.schema}
        self.settings: Settings = load(env=self.environment)
        self.log_id = log_id_for(self.settings.gateway_id)
        self.origin = self.log_id  # the default checkpoint origin
        self.checkpoint_key = load_checkpoint_key(self.settings.witnessing.key_path(self.state))
        self.vkey = cp.verifier_key(self.origin, self.checkpoint_key)
        self.high_water = self.settings.witnessing.high_water_path(self.state)
        self.archive = self.state / "checkpoints.sqlite3"

    async def run(self, fn: Callable[[AccessLog], Awaitable[T]]) -> T:
        store = storage.access_log(self.settings)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    def guard(self, store: AccessLog, witnesses: Any = None) -> LogGuard:
        return LogGuard(store, self.origin, self.checkpoint_key, self.high_water, CheckpointArchive(self.archive),
                        witnesses=lambda: witnesses)

    async def build(self, witnesses: Any, n: int = 160, heads: tuple[int, ...] = (100, 150)) -> None:
        """``n`` entries; at each size in ``heads`` a head signed and published as the running gateway does
        (high-water check, head, checkpoint to the witnesses, high water raised, archived)."""
        async def fill(store: AccessLog) -> None:
            guard = self.guard(store, witnesses)
            try:
                for i in range(n):
                    await store.append(record(i))
                    if i + 1 in heads:
                        await guard.check()
                        head = await store.issue_tree_head(self.key, self.log_id)
                        assert head is not None
                        await guard.publish(head)
            finally:
                await guard.archive.close()

        await self.run(fill)

    def witness(self) -> AbstractAsyncContextManager[RunningWitness]:
        return witness_of(self.root / "witness", self.origin, self.vkey)


@asynccontextmanager
async def witness_of(directory: Path, origin: str, vkey: cp.VerifierKey) -> AsyncIterator[RunningWitness]:
    """A real witness on loopback (state under ``directory``) for the log ``origin`` signed by ``vkey``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "witness.toml"
    path.write_text(f'name = "{WITNESS}"\nlisten = "127.0.0.1:0"\nstate_dir = "state"\n\n'
                    f'[[logs]]\norigin = "{origin}"\nvkeys = ["{vkey.encode()}"]\n', encoding="utf-8")
    async with running_witness(load_config(path)) as running:
        yield running


def sql_blob(target: PostgresTarget | None, data: bytes) -> str:
    """A bytes literal in the SQL of the store: PostgreSQL's ``bytea`` with ``target``, else SQLite's."""
    return f"'\\x{data.hex()}'::bytea" if target else f"x'{data.hex()}'"


def sql_replace(target: PostgresTarget | None, column: str, old: str, new: str) -> str:
    """SQL for ``column`` (bytes) with ``old`` replaced by ``new``, in the store's dialect."""
    if target:
        return f"convert_to(replace(convert_from({column}, 'UTF8'), '{old}', '{new}'), 'UTF8')"
    return f"replace({column}, '{old}', '{new}')"


class Tamperer:
    """Write access to the database of the gateway configured by ``settings`` (and, with ``state``, to its state
    directory), nothing else."""

    def __init__(self, settings: Settings, state: Path | None = None) -> None:
        self.settings, self.target = settings, settings.database if settings.storage_backend == "postgres" else None
        self.state = state or settings.state_dir

    def blob(self, data: bytes) -> str:
        return sql_blob(self.target, data)

    def replace(self, column: str, old: str, new: str) -> str:
        return sql_replace(self.target, column, old, new)

    def sql(self, *statements: str) -> None:
        if self.target is not None:
            dba(self.target, *statements)
            return
        conn = sqlite3.connect(self.settings.audit_database, isolation_level=None)
        try:
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                conn.execute(f"DROP TRIGGER {name}")
            conn.execute("BEGIN")
            for statement in statements:
                conn.execute(statement)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def truncate(self, keep: int, *, heads_above: bool) -> None:
        """Cut every entry from ``keep`` on, with its subtrees and search-index rows (and the heads above the
        cut and their checkpoints with ``heads_above``), and recount the aggregates: what a careful intruder
        does so that nothing in the database points at the missing tail."""
        self.sql(f"DELETE FROM access_log WHERE idx >= {keep}",
                 f"DELETE FROM merkle_nodes WHERE ((idx + 1) << level) > {keep}",
                 *(f"DELETE FROM {table} WHERE idx >= {keep}" for table in INDEX_TABLES if self._has(table)),
                 *([f"DELETE FROM tree_heads WHERE tree_size > {keep}"] if heads_above else []),
                 *([f"DELETE FROM checkpoints WHERE tree_size > {keep}"]
                   if heads_above and self._has("checkpoints") else []))
        self.recount()

    def recount(self) -> None:
        """Rebuild the hourly aggregates from the entries left: derived data anyone with the database can
        recompute, so a careful intruder leaves them consistent (what is tested is then the layer that must catch
        the cut, not the counts)."""
        if not self._has("access_hourly"):
            return
        if self.target is not None:
            target = self.target

            async def rebuild() -> None:
                async with await psycopg.AsyncConnection.connect(DSN) as conn:
                    await conn.execute(target.search_path())
                    await migrate_hourly(conn)
                    await conn.commit()

            with ThreadPoolExecutor(max_workers=1) as pool:  # the caller's event loop may be running
                pool.submit(asyncio.run, rebuild()).result()
            return
        conn = sqlite3.connect(self.settings.audit_database, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM access_hourly")
            build_hourly(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _has(self, table: str) -> bool:
        if self.target is not None:
            with psycopg.connect(DSN, autocommit=True) as pg:
                row = pg.execute("SELECT to_regclass(%s)", (f"{self.target.schema}.{table}",)).fetchone()
                return bool(row and row[0])
        conn = sqlite3.connect(self.settings.audit_database)
        try:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None
        finally:
            conn.close()

    def put_in_place(self, forged: Settings) -> None:
        """Replace the whole database by ``forged``'s (same backend): the file copied over the real one, or every
        table of the schema emptied and refilled from the forged schema."""
        if self.target is None:
            source = sqlite3.connect(forged.audit_database)
            target = sqlite3.connect(self.settings.audit_database)
            try:
                source.backup(target)
            finally:
                source.close()
                target.close()
            return
        assert forged.database is not None
        with psycopg.connect(DSN, autocommit=True) as conn:
            def tables_of(schema: str) -> set[str]:
                return {t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                                   (schema,)).fetchall()}
            tables = sorted(tables_of(self.target.schema) & tables_of(forged.database.schema))  # the log's
        statements = []
        for table in tables:
            mine = sql.Identifier(self.target.schema, table)
            theirs = sql.Identifier(forged.database.schema, table)
            statements += [sql.SQL("DELETE FROM {}").format(mine).as_string(None),
                           sql.SQL("INSERT INTO {} SELECT * FROM {}").format(mine, theirs).as_string(None)]
        dba(self.target, *statements)

    def plant_retired_key(self, key: SigningKey) -> None:
        """Add ``key`` to the state directory's key store as a retired key (PEM and manifest record)."""
        store = KeyStore(gateway_key_dir(self.state))
        store.directory.mkdir(parents=True, exist_ok=True)
        manifest = store.manifest_path
        document: dict[str, Any] = (json.loads(manifest.read_text()) if manifest.exists()
                                    else {"active": key.kid, "keys": []})
        now = datetime.now(UTC).isoformat()
        document["keys"].append({"kid": key.kid, "created_at": now, "retired_at": now})
        store.key_path(key.kid).write_bytes(keys.private_pem(key))
        manifest.write_text(json.dumps(document))


async def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``anss-gateway audit verify ARGS`` as an operator runs it (in a thread: the command runs its own event
    loop, while the test's loop serves the witness): exit code and output."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["audit", "verify", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def later(seconds: float) -> str:
    return str(datetime.now(UTC).timestamp() + seconds)
