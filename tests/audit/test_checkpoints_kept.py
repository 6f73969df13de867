"""Each signed head's C2SP checkpoint note is kept in the access log itself, cosignatures appended as they arrive,
and carried by the export (docs/merkle-log.md sections 6, 8, 11 and 13) — on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AccessLog, SqliteAccessLog
from gateway.audit import checkpoint as cp
from gateway.audit.offline import ExportInvalid, verify_export_lines
from gateway.audit.postgres.store import PostgresAccessLog
from gateway.audit.sqlite.schema import ensure_schema
from gateway.crypto import keys
from tests.audit.pg_support import DSN, dba, fresh_schema_async
from tests.audit.store_support import KEY, LOG_ID, TRUSTED, StoreFactory
from tests.audit.test_store_contract import filled

LOG = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS_A = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
WITNESS_B = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
ORIGIN = "anss-gateway.access"


async def signed_head(store: AccessLog, n: int) -> tuple[int, str]:
    """``n`` entries, a head over them, and its checkpoint signed by the log's key (no cosignature yet)."""
    await filled(store, n - await store.count(), await store.count())
    head = await store.issue_tree_head(KEY, LOG_ID)
    assert head is not None
    return n, cp.sign_checkpoint(cp.Checkpoint(ORIGIN, n, head.head.root_hash), ORIGIN, LOG)


def cosigned(note: str, *witnesses: tuple[str, Ed25519PrivateKey]) -> str:
    body = cp.parse_note(note).text
    return cp.add_signatures(note, [cp.cosign(body, name, key, 1764700000 + i)
                                    for i, (name, key) in enumerate(witnesses)])


async def test_a_head_keeps_its_checkpoint_and_gains_cosignatures(store_factory: StoreFactory) -> None:
    store, other = await store_factory(), await store_factory()
    size, note = await signed_head(store, 10)
    assert await store.checkpoint() is None
    assert await store.save_checkpoint(size, note) == note
    a = cosigned(note, ("cndp.ma/witness", WITNESS_A))
    assert await store.save_checkpoint(size, a) == a
    b = cosigned(note, ("dgssi.ma/witness", WITNESS_B))  # another witness's line, arriving later
    both = await other.save_checkpoint(size, b)  # from another process: appended after the one kept
    assert cp.parse_note(both).signatures == cp.parse_note(a).signatures + cp.parse_note(b).signatures[1:]
    assert await store.save_checkpoint(size, note) == both  # nothing to add: unchanged
    assert await other.checkpoint(size) == both and await store.checkpoint() == both
    names = {c.name for c in cp.verify_cosignatures(both, [
        cp.verifier_key("cndp.ma/witness", WITNESS_A, cp.COSIGNATURE_V1),
        cp.verifier_key("dgssi.ma/witness", WITNESS_B, cp.COSIGNATURE_V1)])}
    assert names == {"cndp.ma/witness", "dgssi.ma/witness"}
    later, later_note = await signed_head(store, 20)
    await store.save_checkpoint(later, later_note)
    assert await other.checkpoint() == later_note and await other.checkpoint(10) == both
    assert await store.checkpoint(15) is None


async def test_only_the_heads_own_checkpoint_is_kept(store_factory: StoreFactory) -> None:
    store = await store_factory()
    size, note = await signed_head(store, 10)
    await store.save_checkpoint(size, note)
    with pytest.raises(ValueError, match="no signed tree head of size 11"):
        await store.save_checkpoint(11, note)
    wrong_root = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 10, bytes(32)), ORIGIN, LOG)
    with pytest.raises(ValueError, match="another root"):
        await store.save_checkpoint(size, wrong_root)
    with pytest.raises(ValueError, match="another root"):  # a note of another size, saved under this one
        await store.save_checkpoint(size, cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 9, bytes(32)), ORIGIN, LOG))
    head = await store.tree_head(10)
    assert head is not None
    other_text = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 10, head.head.root_hash, ("extension",)), ORIGIN, LOG)
    with pytest.raises(ValueError, match="different checkpoints"):
        await store.save_checkpoint(size, other_text)
    with pytest.raises(ValueError, match="not a checkpoint"):
        await store.save_checkpoint(size, "not a note\n")
    assert await store.checkpoint(size) == note


async def test_the_export_carries_each_heads_checkpoint(store_factory: StoreFactory) -> None:
    store = await store_factory()
    size, note = await signed_head(store, 10)
    note = await store.save_checkpoint(size, cosigned(note, ("cndp.ma/witness", WITNESS_A)))
    await signed_head(store, 15)  # a head without a checkpoint (signed by `audit export`, say)
    out = io.StringIO()
    await store.export(out)
    lines = out.getvalue().splitlines()
    heads = [json.loads(line) for line in lines if '"type":"tree_head"' in line]
    assert [h["tree_size"] for h in heads] == [10, 15]
    assert [h.get("checkpoint") for h in heads] == [note, None]
    assert list(heads[0])[-1] == "checkpoint"  # after the members a verifier of section 7 reads
    assert verify_export_lines(lines, keys.jwks([KEY])).tree_size == 15  # the offline verifier accepts it as it is


# --- the triggers, and the migrations -------------------------------------------------------------------------------


@asynccontextmanager
async def backend(kind: str, tmp_path: Path) -> AsyncIterator[tuple[AccessLog, Callable[[str], None]]]:
    """A store and a way to run SQL on its database as an application would (triggers on)."""
    if kind == "sqlite":
        path = tmp_path / "log.sqlite3"
        store: AccessLog = SqliteAccessLog(path, trusted_keys=lambda: TRUSTED)

        def run(statement: str) -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute(statement)
            finally:
                conn.close()
        await store.open()
        try:
            yield store, run
        finally:
            await store.close()
        return
    async with fresh_schema_async() as target:
        store = PostgresAccessLog(target, trusted_keys=lambda: TRUSTED)
        await store.open()
        try:
            yield store, lambda statement: dba(target, statement, disable_triggers=False)
        finally:
            await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_the_triggers_let_a_checkpoint_only_gain_signature_lines(kind: str, tmp_path: Path) -> None:
    refused = (sqlite3.IntegrityError, psycopg.errors.RaiseException)
    async with backend(kind, tmp_path) as (store, run):
        size, note = await signed_head(store, 10)
        await store.save_checkpoint(size, note)
        a = cosigned(note, ("cndp.ma/witness", WITNESS_A))
        quoted = a.replace("'", "''")
        run(f"UPDATE checkpoints SET note = '{quoted}' WHERE tree_size = 10")  # what save_checkpoint does
        assert await store.checkpoint(10) == a
        forged = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 10, bytes(32)), ORIGIN, LOG)
        for statement in (f"UPDATE checkpoints SET note = '{forged}' WHERE tree_size = 10",
                          f"UPDATE checkpoints SET note = '{note}' WHERE tree_size = 10",  # a cosignature removed
                          f"UPDATE checkpoints SET note = '{quoted}x\n\ny' WHERE tree_size = 10",  # a new blank line
                          "UPDATE checkpoints SET tree_size = 11",
                          "DELETE FROM checkpoints"):
            with pytest.raises(refused, match="append-only"):
                run(statement)
        assert await store.checkpoint(10) == a


async def test_a_v4_sqlite_file_gains_the_checkpoints_table(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    store = SqliteAccessLog(path, trusted_keys=lambda: TRUSTED)
    await store.open()
    await filled(store, 5)
    assert await store.issue_tree_head(KEY, LOG_ID) is not None
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)  # back to v4 as it was: no checkpoints, no aggregates
    conn.execute("DROP TABLE checkpoints")
    conn.execute("DROP TABLE access_hourly")
    conn.execute("DROP TRIGGER meta_no_update")
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.execute("CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, 'no'); END")
    out = io.StringIO()
    reopened = SqliteAccessLog(path, trusted_keys=lambda: TRUSTED)
    try:
        await reopened.export(out)  # a v4 file exports as it is (no checkpoints to carry)
    finally:
        await reopened.close()
    assert ensure_schema(conn) == 4
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("6",)
    assert conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone() == (0,)
    assert conn.execute("SELECT SUM(entries) FROM access_hourly WHERE source = ''").fetchone() == (5,)
    conn.close()
    store = SqliteAccessLog(path, trusted_keys=lambda: TRUSTED)
    await store.open()
    try:
        assert await store.verify() is None
        head = await store.tree_head(5)
        assert head is not None
        note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 5, head.head.root_hash), ORIGIN, LOG)
        assert await store.save_checkpoint(5, note) == note
    finally:
        await store.close()


async def test_a_version_2_postgres_schema_gains_the_checkpoints_table() -> None:
    async with fresh_schema_async() as target:
        store = PostgresAccessLog(target, trusted_keys=lambda: TRUSTED)
        await store.open()
        await filled(store, 5)
        assert await store.issue_tree_head(KEY, LOG_ID) is not None
        await store.close()
        dba(target, "DROP TABLE checkpoints", "DROP FUNCTION checkpoints_guard", "DROP TABLE access_hourly",
            "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        store = PostgresAccessLog(target, trusted_keys=lambda: TRUSTED)
        await store.open()
        try:
            head = await store.tree_head(5)
            assert head is not None
            note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 5, head.head.root_hash), ORIGIN, LOG)
            assert await store.save_checkpoint(5, note) == note
            assert await store.verify() is None
        finally:
            await store.close()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(target.search_path())
            assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("4",)


async def test_the_offline_verifier_refuses_a_checkpoint_that_is_not_its_heads(store_factory: StoreFactory) -> None:
    store = await store_factory()
    size, note = await signed_head(store, 10)
    await store.save_checkpoint(size, note)
    out = io.StringIO()
    await store.export(out)
    lines = out.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if '"type":"tree_head"' in line)
    for bad, why in ((cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 10, bytes(32)), ORIGIN, LOG), "another size or root"),
                     ("a note?", "malformed"), (12, "malformed")):
        d = json.loads(lines[at])
        d["checkpoint"] = bad
        forged = [*lines[:at], json.dumps(d, separators=(",", ":")), *lines[at + 1:]]
        with pytest.raises(ExportInvalid, match=f"checkpoint of the tree head of size 10 .*{why}"):
            verify_export_lines(forged, keys.jwks([KEY]))
