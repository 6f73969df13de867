"""The access log: one entry per request, pseudonymised, and `anss-gateway audit verify` catches tampering."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit import AccessRecord, SqliteAccessLog
from gateway.audit.sqlite import verify_database
from gateway.cli import main
from tests.gateway.conftest import Stack


def entries(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    try:
        return [dict(orjson.loads(r[0])) for r in conn.execute("SELECT entry FROM access_log ORDER BY idx")]
    finally:
        conn.close()


async def test_every_request_is_logged_without_personal_data(stack: Stack) -> None:
    household = stack.population.fixture("deceased_father")
    answer = await stack.client.verify({"idcs": household.mother.idcs}, "asd.eligibility", "CASE-77")
    assert answer.status == 200
    await stack.client.verify({"idcs": stack.population.unknown_idcs()}, "asd.eligibility", "CASE-78")
    father = stack.population.fixture("amo_tadamon").father
    assert father.cin is not None
    await stack.client.verify({"cin": father.cin}, "asd.eligibility", "CASE-79", ["identity"])

    logged = entries(stack.settings.audit_database)
    assert [e["case_ref"] for e in logged] == ["CASE-77", "CASE-78", "CASE-79"]
    first = logged[0]
    assert first["client"] == "anss.asd" and first["purpose"] == "asd.eligibility"
    assert first["checks"] == ["identity", "household", "schooling", "health_coverage", "employment"]
    assert {s["name"]: s["status"] for s in first["sources"]} == dict.fromkeys(
        ["civil_registry", "education", "health", "employment"], "ok")
    assert first["outcome"] == "answered" and first["status"] == 200 and first["latency_ms"] > 0
    assert first["legal_basis"].startswith("Loi n° 58-23")
    assert len(first["subject"]) == 64 and first["subject"] != household.mother.idcs
    assert logged[1]["outcome"] == "subject_not_found" and logged[1]["status"] == 404
    # a CIN subject is logged under the pseudonym of its IDCS, so one citizen has one pseudonym
    runtime_pseudonym = logged[2]["subject"]
    again = await stack.client.verify({"idcs": father.idcs}, "asd.eligibility", "CASE-80", ["identity"])
    assert again.status == 200
    assert entries(stack.settings.audit_database)[3]["subject"] == runtime_pseudonym

    raw = stack.settings.audit_database.read_bytes()
    wal = stack.settings.audit_database.with_name(stack.settings.audit_database.name + "-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    for member in household.members:
        for value in (member.idcs, member.first_name, member.last_name, member.birth_date.isoformat()):
            assert value.encode() not in raw, f"personal data {value!r} reached the access log"
    assert father.cin.encode() not in raw
    assert verify_database(stack.settings.audit_database) is None


async def test_health_and_jwks_are_not_access_logged(stack: Stack) -> None:
    async with stack.client.session.get(stack.gateway.url + "/healthz") as resp:
        assert resp.status == 200
    async with stack.client.session.get(stack.gateway.url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
    assert entries(stack.settings.audit_database) == []


def _record(i: int) -> AccessRecord:
    return AccessRecord(time=f"2026-11-23T10:00:{i:02d}.000000+00:00", request_id=f"r{i}", method="POST",
                        path="/v1/verifications", status=200, outcome="answered", latency_ms=1.0,
                        client="anss.asd", case_ref=f"C{i}")


async def _log_of(path: Path, n: int) -> None:
    store = SqliteAccessLog(path)
    await store.open()
    try:
        indices = [await store.append(_record(i)) for i in range(n)]
        assert indices == list(range(n))
        assert await store.count() == n
    finally:
        await store.close()


def _tamper(path: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:  # an attacker with file access can drop our triggers; the chain still tells
        conn.execute("DROP TRIGGER access_log_no_update")
        conn.execute("DROP TRIGGER access_log_no_delete")
        conn.execute(sql, args)
    finally:
        conn.close()


async def test_sql_updates_and_deletes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    await _log_of(path, 3)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE access_log SET entry = x'00' WHERE idx = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM access_log WHERE idx = 1")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql", "bad_index"),
    [
        ("UPDATE access_log SET entry = replace(entry, 'C3', 'C9') WHERE idx = 3", 3),
        ("DELETE FROM access_log WHERE idx = 2", 2),
        ("UPDATE access_log SET entry = (SELECT entry FROM access_log WHERE idx = 1), "
         "leaf_hash = (SELECT leaf_hash FROM access_log WHERE idx = 1) WHERE idx = 4", 4),
    ],
    ids=["altered", "deleted", "copied"],
)
async def test_audit_verify_names_first_bad_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  sql: str, bad_index: int) -> None:
    path = tmp_path / "log.sqlite3"
    await _log_of(path, 6)
    assert main(["audit", "verify", "--database", str(path)]) == 0
    _tamper(path, sql)
    assert main(["audit", "verify", "--database", str(path)]) == 1
    assert f"entry {bad_index}" in capsys.readouterr().out


async def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "log.sqlite3"
    store = SqliteAccessLog(path)
    await store.open()
    try:
        indices = await asyncio.gather(*(store.append(_record(i % 60)) for i in range(300)))
        assert sorted(indices) == list(range(300))
    finally:
        await store.close()
    assert verify_database(path) is None
    reopened = SqliteAccessLog(path)
    await reopened.open()
    try:
        assert await reopened.append(_record(1)) == 300, "the chain continues after a restart"
    finally:
        await reopened.close()
    assert verify_database(path) is None
