"""PostgreSQL as the gateway's shared storage, beyond the contracts: who signs (the elected sequencer and its
succession), many processes starting on one fresh schema, the ``[storage]`` settings and the DSN's secrecy,
and the gateway, the ``consent`` office and ``audit verify`` all on one schema. Real server, fresh schemas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from gateway.audit import TreeHeadSigner, log_id_for, tree_head_keys
from gateway.audit import merkle as m
from gateway.audit.postgres.schema import SCHEMA_VERSION
from gateway.audit.postgres.store import PostgresAccessLog
from gateway.audit.postgres.tree import verify_postgres
from gateway.cli.main import main
from gateway.config.settings import DSN_ENV, ConfigError, Settings, load
from gateway.crypto import keys
from gateway.policy.consent.postgres import PostgresConsentStore
from gateway.stores.postgres import DatabaseUnavailable, PostgresTarget
from tests.audit.pg_support import DSN, fresh_schema, fresh_schema_async
from tests.audit.test_store_contract import KEY, LOG_ID, TRUSTED, record
from tests.consent.conftest import GRANTEE, PURPOSE, calls
from tests.gateway.conftest import build_stack
from tests.officers.conftest import OFFICER

SECRET = "s3cret-Pa55word"


@pytest.fixture
async def target() -> AsyncIterator[PostgresTarget]:
    async with fresh_schema_async() as fresh:
        yield fresh


async def opened(target: PostgresTarget, count: int) -> list[PostgresAccessLog]:
    stores = [PostgresAccessLog(target, trusted_keys=lambda: TRUSTED) for _ in range(count)]
    await asyncio.gather(*(s.open() for s in stores))  # at once, on a schema nobody created yet
    return stores


# --- the schema's versions ----------------------------------------------------------------------------------------


async def test_a_version_1_schema_gains_its_co_subjects_table_when_opened(target: PostgresTarget) -> None:
    from gateway.audit.query import LogQuery
    from tests.audit.pg_support import dba
    from tests.audit.test_search_contract import record as indexed_record

    (log,) = await opened(target, 1)
    for i in range(30):
        await log.append(indexed_record(i))
    await log.close()
    dba(target, "DROP TABLE access_index_persons", "DROP TABLE checkpoints", "DROP FUNCTION checkpoints_guard",
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'")  # as version 1 was: no checkpoints either
    found = await asyncio.to_thread(verify_postgres, target)
    assert found is not None and "co-subject" in found.reason, "a version 1 index lacks what these entries name"
    (log,) = await opened(target, 1)
    try:
        hits = (await log.search(LogQuery(person=f"{101:064x}", limit=100))).hits
        assert [h.index for h in hits] == [i for i in range(29, -1, -1) if i % 5 == 2]
        assert await asyncio.to_thread(verify_postgres, target) is None
    finally:
        await log.close()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(target.search_path())
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")


# --- the elected sequencer ------------------------------------------------------------------------------------------


async def test_one_process_is_elected_and_another_takes_over_when_it_stops(target: PostgresTarget) -> None:
    a, b, c = await opened(target, 3)
    try:
        assert [await a.leading(), await b.leading(), await c.leading()] == [True, False, False]
        assert await a.leading(), "the seat is kept"
        await a.close()
        for _ in range(100):  # the server frees a closed session's lock once it has ended that backend, not at once
            if await b.leading():
                break
            await asyncio.sleep(0.05)
        assert [await b.leading(), await c.leading()] == [True, False], "the next to ask takes the free seat"
    finally:
        for store in (a, b, c):
            await store.close()


async def test_a_sequencer_whose_session_died_is_replaced_and_knows_it(target: PostgresTarget) -> None:
    a, b = await opened(target, 2)
    try:
        assert await a.leading() and not await b.leading()
        assert a._election is not None
        pid = a._election.info.backend_pid
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as admin:  # the server drops it
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(50):
            if await b.leading():
                break
            await asyncio.sleep(0.05)
        assert await b.leading(), "the lock died with the session: b takes over"
        assert not await a.leading(), "a finds its session gone and asks again: the seat is taken"
    finally:
        await a.close()
        await b.close()


async def test_only_the_elected_process_signs_on_the_cadence(target: PostgresTarget) -> None:
    a, b = await opened(target, 2)
    try:
        signers = [TreeHeadSigner(s, lambda: KEY, LOG_ID, interval_s=3600, max_entries=5) for s in (a, b)]
        assert await a.leading()
        for i in range(12):
            await (a if i % 2 else b).append(record(i))
        assert await signers[1].tick() is None, "b is not elected: its rounds do nothing, however due"
        head = await signers[0].tick()
        assert head is not None and head.head.tree_size == 12
        await a.close()
        await b.append(record(12))
        for _ in range(5):
            await b.append(record(13))
        taken = await signers[1].tick()
        assert taken is not None and taken.head.tree_size == 18, "b was elected when a stopped, and signs"
        assert await b.verify() is None
    finally:
        await a.close()
        await b.close()


async def test_heads_asked_of_every_instance_at_once_are_one_per_size(target: PostgresTarget) -> None:
    stores = await opened(target, 5)
    try:
        for round_ in range(3):
            await asyncio.gather(*(s.append(record(round_ * 10 + i)) for i, s in enumerate(stores)))
            signed = [h for h in await asyncio.gather(*(s.issue_tree_head(KEY, LOG_ID) for s in stores)) if h]
            assert len(signed) == 1 and signed[0].head.tree_size == 5 * (round_ + 1)
        with target.connect_sync() as conn:
            sizes = [r[0] for r in conn.execute("SELECT tree_size FROM tree_heads ORDER BY tree_size").fetchall()]
            assert sizes == [5, 10, 15]
            with pytest.raises(psycopg.errors.UniqueViolation):  # the primary key, should a lock ever fail
                head = m.TreeHead(15, signed[0].head.root_hash, signed[0].head.timestamp_ms + 1, LOG_ID).sign(KEY)
                conn.execute("INSERT INTO tree_heads VALUES (15, %s, %s, %s, %s)",
                             (head.head.root_hash, head.head.timestamp_ms, LOG_ID, head.signature))
        assert verify_postgres(target, TRUSTED) is None
    finally:
        for store in stores:
            await store.close()


async def test_stores_of_both_kinds_open_one_fresh_schema_at_once(target: PostgresTarget) -> None:
    logs = [PostgresAccessLog(target) for _ in range(3)]
    registries = [PostgresConsentStore(target) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in (*logs, *registries)))
    try:
        assert sorted(await asyncio.gather(*(s.append(record(i)) for i, s in enumerate(logs)))) == [0, 1, 2]
        assert await registries[2].list_for("nobody") == []
    finally:
        for store in (*logs, *registries):
            await store.close()


# --- [storage] and the DSN's secrecy ---------------------------------------------------------------------------------


def write_config(tmp_path: Path, storage: str) -> Path:
    """A copy of the configuration whose gateway.toml has this ``[storage]`` table."""
    source = Path(__file__).resolve().parents[2] / "config"
    config = tmp_path / "config"
    config.mkdir()
    for path in source.rglob("*.toml"):
        (config / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        (config / path.relative_to(source)).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    gateway = config / "gateway.toml"
    text = gateway.read_text(encoding="utf-8")
    start = text.index("[storage]")
    end = text.index("\n[", start + 1)
    gateway.write_text(text[:start] + "[storage]\n" + storage + text[end:], encoding="utf-8")
    return config


def test_storage_defaults_to_sqlite_and_ignores_a_dsn(tmp_path: Path) -> None:
    settings = load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path), DSN_ENV: "postgresql://x@y/z"})
    assert (settings.storage_backend, settings.database) == ("sqlite", None)


def test_the_dsn_comes_from_its_file_or_the_environment_and_stays_secret(tmp_path: Path) -> None:
    dsn = f"postgresql://gateway:{SECRET}@db.internal:6543/anss"
    config = write_config(tmp_path, 'backend = "postgres"\ndsn_file = "database.dsn"\nschema = "gw_prod"\n')
    (config / "database.dsn").write_text(dsn + "\n", encoding="utf-8")
    settings = load(config, env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path)})
    assert settings.database == PostgresTarget(dsn, "gw_prod")
    assert SECRET not in repr(settings) and SECRET not in str(settings.database)
    assert settings.database.describe() == "PostgreSQL db.internal:6543/anss, schema gw_prod"
    other = load(config, env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path), DSN_ENV: "host=h dbname=d",
                              "ANSS_GATEWAY_DATABASE_SCHEMA": "other"})
    assert other.database == PostgresTarget("host=h dbname=d", "other"), "the environment wins over the files"


@pytest.mark.parametrize(("storage", "env", "message"), [
    ('backend = "postgres"\n', {}, "needs a DSN"),
    ('backend = "postgres"\ndsn_file = "missing.dsn"\n', {}, "cannot read it"),
    (f'backend = "postgres"\ndsn = "postgresql://u:{SECRET}@h/d"\n', {}, "not in the configuration"),
    ('backend = "postgres"\n', {DSN_ENV: f"not a dsn {SECRET}"}, "not a PostgreSQL connection string"),
    ('backend = "postgres"\nschema = "Bad-Name"\n', {DSN_ENV: "host=h"}, "`schema`"),
    ('backend = "mysql"\n', {}, "'sqlite' or 'postgres'"),
])
def test_storage_mistakes_are_named_without_the_dsn(tmp_path: Path, storage: str, env: dict[str, str],
                                                   message: str) -> None:
    config = write_config(tmp_path, storage)
    with pytest.raises(ConfigError, match=message) as caught:
        load(config, env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path), **env})
    assert "[storage]" in str(caught.value) and SECRET not in str(caught.value)


async def test_an_unreachable_database_is_reported_without_the_password() -> None:
    for dsn in (f"postgresql://postgres:{SECRET}@127.0.0.1:1/test", f"postgresql://nobody:{SECRET}@127.0.0.1/test"):
        store = PostgresAccessLog(PostgresTarget(dsn, "anything"))
        with pytest.raises(DatabaseUnavailable) as caught:
            await store.open()
        await store.close()
        assert SECRET not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_commands_report_an_unreachable_database_without_the_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("ANSS_GATEWAY_STORAGE_BACKEND", "postgres")
    monkeypatch.setenv(DSN_ENV, f"postgresql://postgres:{SECRET}@127.0.0.1:1/test")
    assert main(["audit", "verify"]) == 2
    err = capsys.readouterr().err
    assert "database unavailable" in err and "127.0.0.1:1/test" in err and SECRET not in err


# --- the gateway, the office and the commands on one schema ---------------------------------------------------------


def on_postgres(target: PostgresTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSS_GATEWAY_STORAGE_BACKEND", "postgres")
    monkeypatch.setenv(DSN_ENV, target.dsn)
    monkeypatch.setenv("ANSS_GATEWAY_DATABASE_SCHEMA", target.schema)


async def test_the_gateway_the_office_and_audit_verify_share_one_schema(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Granted by the office (another process's view), used by the gateway, revoked by the office: refused at
    once, without contacting any administration; everything in one log that `audit verify` finds intact."""
    with fresh_schema() as target:
        on_postgres(target, monkeypatch)

        def postgres(settings: Settings) -> Settings:
            return replace(settings, storage_backend="postgres", database=target)

        async with build_stack(tmp_path, postgres) as stack:
            monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(stack.settings.state_dir))
            idcs = stack.population.fixture("salaried_parent").father.idcs
            grant = ["consent", "grant", "--idcs", idcs, "--grantee", GRANTEE, "--purpose", PURPOSE, "--check",
                     "identity", "--valid-until", "2099-12-31T23:59:59Z", "--evidence", "document:form-12",
                     "--operator", "a"]
            assert await asyncio.to_thread(main, grant) == 0
            consent_id = json.loads(capsys.readouterr().out)["consent_id"]
            async with stack.client_for(GRANTEE) as housing:
                used = await housing.verify({"idcs": idcs}, PURPOSE, "PG-1", ["identity"])
                assert used.status == 200
                revoke = ["consent", "revoke", consent_id, "--reason", "withdrawn", "--operator", "a"]
                assert await asyncio.to_thread(main, revoke) == 0
                before = calls(stack)
                refused = await housing.verify({"idcs": idcs}, PURPOSE, "PG-2", ["identity"])
            assert (refused.status, refused.json()["code"]) == (403, "consent_revoked")
            assert calls(stack) == before, "refused before any administration was contacted"
            async with stack.client_for(OFFICER) as officer:  # the officers' API over the same schema
                found = await officer.request("POST", "/v1/audit/search", {"subject": {"idcs": idcs}})
                assert found.status == 200
                assert [h["index"] for h in found.json()["entries"]] == [3, 2, 1, 0]
                checked = await officer.request("POST", "/v1/audit/verify")
                assert (checked.status, checked.json()["result"]) == (200, "intact")
        with target.connect_sync() as conn:
            logged = [json.loads(r[0]) for r in conn.execute("SELECT entry FROM access_log ORDER BY idx")]
            heads = conn.execute("SELECT count(*) FROM tree_heads").fetchone()
        assert [(e["method"], e["outcome"]) for e in logged[:4]] == [
            ("CLI", "consent_granted"), ("POST", "answered"), ("CLI", "consent_revoked"), ("POST", "consent_revoked")]
        assert [e["client"] for e in logged[4:]] == [OFFICER, OFFICER], "the officer's own actions are logged"
        assert logged[1]["request_id"] == used.headers["X-Request-Id"] and logged[1]["consent_id"] == consent_id
        assert heads is not None and heads[0] >= 1, "the gateway signed the tail on its way out"
        assert idcs not in json.dumps(logged), "the identifier is stored nowhere"
        capsys.readouterr()
        assert main(["audit", "verify"]) == 0
        out = capsys.readouterr().out
        assert f"access log intact (PostgreSQL 127.0.0.1:5432/test, schema {target.schema}): 6 entries" in out
        assert verify_postgres(target, tree_head_keys(load())) is None
        export = tmp_path / "export.jsonl"
        assert await asyncio.to_thread(main, ["audit", "export", "--out", str(export)]) == 0
        capsys.readouterr()
        assert main(["keys", "jwks"]) == 0
        published = _write(tmp_path / "jwks.json", json.loads(capsys.readouterr().out))
        assert main(["audit", "verify", "--export", str(export), "--jwks", published]) == 0, "verifies offline"
        stranger = _write(tmp_path / "stranger.json", keys.jwks([KEY]))
        assert main(["audit", "verify", "--export", str(export), "--jwks", stranger]) == 1
        assert log_id_for(stack.settings.gateway_id) in export.read_text(encoding="utf-8").splitlines()[0]


def _write(path: Path, document: object) -> str:
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)
