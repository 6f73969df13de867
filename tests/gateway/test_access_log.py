"""The access log: one entry per request, pseudonymised, in a Merkle tree log whose heads the running gateway
signs; `anss-gateway audit verify` catches tampering; replicas and restarts keep one tree; a v1 (hash chain)
file is migrated. (The store contract is tests/audit/test_store_contract.py; tampering tests/audit/test_tamper.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit import AccessLogCorrupt, AccessRecord, SqliteAccessLog, log_id_for, tree_head_keys
from gateway.audit import merkle as m
from gateway.audit.query import LogQuery
from gateway.audit.record import GENESIS, chain_hash
from gateway.audit.sqlite.schema import SCHEMA_VERSION
from gateway.audit.sqlite.store import verify_database
from gateway.cli.main import main
from gateway.web.state import RUNTIME
from tests.gateway.conftest import Stack, build_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit verify` reads the configured gateway keys: those of a state directory of this test."""
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "cli-state"))


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
    assert first["checks"] == ["identity", "household", "schooling", "health_coverage", "employment",
                               "social_registry", "asd_entitlement"]
    assert {s["name"]: s["status"] for s in first["sources"]} == dict.fromkeys(
        ["civil_registry", "education", "health", "employment", "social_registry"], "ok")
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


async def test_bodies_are_logged_as_keyed_digests_that_no_one_can_reverse(stack: Stack) -> None:
    """A verification body is short and predictable (an IDCS has 10^10 values, the rest is in the entry): a plain
    SHA-256 of it would give the identifier back after a few hours of guessing. The log keeps keyed digests."""
    idcs = stack.population.fixture("deceased_father").mother.idcs
    body = orjson.dumps({"subject": {"idcs": idcs}, "purpose": "asd.eligibility", "case_ref": "CASE-DIGEST"})
    answer = await stack.client.request("POST", "/v1/verifications", body=body)
    assert answer.status == 200
    [entry] = entries(stack.settings.audit_database)
    pseudonymiser = stack.gateway.runner.app[RUNTIME].pseudonymiser
    assert entry["request_hmac"] == pseudonymiser.body_digest(body)  # the operator can still check a body shown
    assert entry["response_hmac"] == pseudonymiser.body_digest(answer.body)
    assert entry["request_sha256"] is None and entry["response_sha256"] is None
    plain = {hashlib.sha256(b).hexdigest() for b in (body, answer.body)}
    assert not plain & set(map(str, entry.values())), "a plain digest of a body is in the log"
    # the digest key is not the pseudonym key: a body digest never equals a subject pseudonym of the same text
    assert pseudonymiser.body_digest(f"idcs:{idcs}".encode()) != pseudonymiser.pseudonym("idcs", idcs)


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
    try:  # an attacker with file access can drop our triggers; the tree still tells
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
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
    # a log written without the gateway has no signed head: judged as of when it was written, the cadence allows it
    written = ["--now", "2026-11-23T10:00:06Z"]
    assert main(["audit", "verify", "--database", str(path), *written]) == 0
    _tamper(path, sql)
    assert main(["audit", "verify", "--database", str(path), *written]) == 1
    assert f"entry {bad_index}" in capsys.readouterr().out


async def test_concurrent_appends_keep_one_tree(tmp_path: Path) -> None:
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
        assert await reopened.append(_record(1)) == 300, "the tree continues after a restart"
    finally:
        await reopened.close()
    assert verify_database(path) is None


# --- the running gateway signs tree heads -----------------------------------------------------------------------------


async def test_the_gateway_signs_tree_heads_on_its_cadence(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def every_two_entries(settings: Any) -> Any:
        return replace(settings, tree_head_max_entries=2, tree_head_interval_s=3600.0)

    async with build_stack(tmp_path, every_two_entries) as stack:
        path = stack.settings.audit_database
        idcs = stack.population.fixture("amo_tadamon").father.idcs
        for case in ("HEAD-1", "HEAD-2", "HEAD-3"):
            assert (await stack.client.verify({"idcs": idcs}, "asd.eligibility", case, ["identity"])).status == 200
        deadline = time.monotonic() + 5
        while _latest_head_size(path) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert _latest_head_size(path) >= 2, "two unsigned entries: a head is due within a poll"
        settings = stack.settings
    assert _latest_head_size(path) == len(entries(path)) == 3, "a stopping gateway signs its tail"
    trusted = tree_head_keys(settings)
    assert verify_database(path, trusted) is None
    conn = sqlite3.connect(path)
    try:
        log_ids = {r[0] for r in conn.execute("SELECT log_id FROM tree_heads")}
    finally:
        conn.close()
    assert log_ids == {log_id_for(settings.gateway_id)}
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(settings.state_dir))
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0, capsys.readouterr().out


def _latest_head_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(tree_size), -1) FROM tree_heads").fetchone()[0])
    finally:
        conn.close()


# --- several processes on one file ------------------------------------------------------------------------------------

APPENDER = """
import asyncio, sys
from pathlib import Path
from gateway.crypto import keys
from gateway.audit import AccessRecord, SqliteAccessLog

async def main(path, who, n, pem):
    key = keys.load_private_pem(Path(pem))
    store = SqliteAccessLog(Path(path))
    await store.open()
    try:
        for start in range(0, n, 64):
            batch = [AccessRecord(time="2026-11-23T10:00:00.000000+00:00", request_id=f"{who}-{i}", method="POST",
                                  path="/v1/verifications", status=200, outcome="answered", latency_ms=1.0)
                     for i in range(start, min(start + 64, n))]
            await asyncio.gather(*(store.append(r) for r in batch))
            await store.issue_tree_head(key, "anss-gateway.access")
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""


def test_two_processes_on_one_file_grow_one_tree(tmp_path: Path) -> None:
    from gateway.crypto import keys

    path, pem = tmp_path / "shared.sqlite3", tmp_path / "key.pem"
    key = keys.generate()
    pem.write_bytes(keys.private_pem(key))
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), who, "320", str(pem)], cwd=ROOT,
                              stderr=subprocess.PIPE) for who in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    logged = entries(path)
    assert sorted(e["request_id"] for e in logged) == sorted(f"{w}-{i}" for w in "ab" for i in range(320))
    assert verify_database(path, {key.kid: key.public}) is None
    assert _latest_head_size(path) == 640


# --- schema v1 (the hash chain) is migrated ---------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE access_log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL, leaf_hash BLOB NOT NULL,
                         chain_hash BLOB NOT NULL);
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
"""


def _v1_log(path: Path, n: int, break_at: int | None = None) -> list[bytes]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(V1_SCHEMA)
        previous, written = GENESIS, []
        for i in range(n):
            entry = _record(i % 60).canonical()
            leaf = hashlib.sha256(b"\x00" + entry).digest()
            previous = chain_hash(previous, leaf)
            stored = entry.replace(b"C", b"X") if i == break_at else entry
            conn.execute("INSERT INTO access_log VALUES (?, ?, ?, ?)", (i, stored, leaf, previous))
            written.append(entry)
        return written
    finally:
        conn.close()


async def test_a_v1_log_is_migrated_keeping_entries_and_leaf_hashes(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v1.sqlite3"
    written = _v1_log(path, 130)
    assert verify_database(path) is None, "a v1 file is still checked as a chain"
    store = SqliteAccessLog(path)
    await store.open()
    try:
        assert await store.entries(0, 130) == written
        assert await store.leaf_hashes(0, 130) == [m.leaf_hash(e) for e in written]
        assert await store.append(_record(7)) == 130
        assert [h.index for h in (await store.search(LogQuery(limit=200))).hits] == list(range(130, -1, -1))
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    chain = GENESIS
    for entry in written:
        chain = chain_hash(chain, m.leaf_hash(entry))
    assert meta == {"schema_version": str(SCHEMA_VERSION), "migrated_from": "v1 hash chain",
                    "v1_chain_head": chain.hex(), "v1_entries": "130"}
    assert tables == {"meta", "access_log", "merkle_nodes", "tree_heads",
                      "access_index", "access_index_checks", "access_index_sources",
                      "access_index_persons", "checkpoints", "access_hourly"}  # v1 → current: all of it
    assert verify_database(path) is None
    assert main(["audit", "verify", "--database", str(path), "--now", "2026-11-23T10:00:30Z"]) == 0
    capsys.readouterr()
    # migrated, it has no signed head yet: the gateway signs one at once when it runs; until then verify says so
    assert main(["audit", "verify", "--database", str(path)]) == 1
    assert "131 entries and no signed tree head" in capsys.readouterr().out


async def test_a_broken_v1_log_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    _v1_log(path, 20, break_at=9)
    before = _dump(path)
    store = SqliteAccessLog(path)
    with pytest.raises(AccessLogCorrupt, match="broken at entry 9"):
        await store.open()
    await store.close()
    assert _dump(path) == before, "left as it was, as evidence"


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# --- the canonical bytes ----------------------------------------------------------------------------------------------


def test_fields_added_later_do_not_change_existing_entries() -> None:
    record = _record(3)
    first_release = {f.name for f in dataclasses.fields(AccessRecord)} - {"consent_id", "request_hmac", "response_hmac",
                                                                          "co_subjects"}
    assert set(json.loads(record.canonical())) == first_release, "an unset later field is not written"

    @dataclasses.dataclass(frozen=True)
    class Later(AccessRecord):
        retention_class: str | None = None
        flags: tuple[str, ...] = ()

    assert Later(**dataclasses.asdict(record)).canonical() == record.canonical()
    later = Later(**{**dataclasses.asdict(record), "retention_class": "long", "flags": ("a", "b")})
    assert json.loads(later.canonical()) == {**json.loads(record.canonical()), "retention_class": "long",
                                             "flags": ["a", "b"]}
    unset = replace(record, case_ref=None, detail={})
    assert json.loads(unset.canonical())["case_ref"] is None, "first-release members are always written"


# --- configuration ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway_id", ["anss-gateway", "Passerelle ANSS/é", "..x", "", "a" * 300])
def test_the_log_id_is_always_a_valid_tree_head_log_id(gateway_id: str) -> None:
    log_id = log_id_for(gateway_id)
    assert m.TreeHead(0, m.EMPTY_ROOT, 0, log_id).log_id == log_id
    assert log_id_for("anss-gateway") == "anss-gateway.access"


@pytest.mark.parametrize(("line", "message"), [
    ("tree_head_interval_s = 0", "tree_head_interval_s"),
    ("tree_head_max_entries = 0", "tree_head_max_entries"),
    ("retention_days = -1", "retention_days"),
    ('retention_days = "30"', "retention_days"),
])
def test_bad_audit_settings_are_refused(tmp_path: Path, line: str, message: str) -> None:
    import shutil

    from gateway.config.settings import ConfigError, load

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    text = (config / "gateway.toml").read_text(encoding="utf-8")
    key = line.split(" ")[0]
    text = "\n".join(line if x.startswith(f"{key} =") else x for x in text.splitlines())
    (config / "gateway.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load(config, env={})
    settings = load(ROOT / "config", env={})
    assert (settings.tree_head_interval_s, settings.tree_head_max_entries, settings.audit_retention_days) == (
        60.0, 10_000, 0)


async def test_a_head_answer_is_logged_with_the_digest_of_the_empty_body_it_carried(stack: Stack) -> None:
    """The log's response digest covers what left, as the signature does: a HEAD answer carries no body."""
    async with stack.client.session.head(stack.gateway.url + "/v1/verifications") as resp:
        assert (resp.status, await resp.read()) == (405, b"")
    [entry] = entries(stack.settings.audit_database)
    assert (entry["method"], entry["status"]) == ("HEAD", 405)
    assert entry["response_hmac"] == stack.gateway.runner.app[RUNTIME].pseudonymiser.body_digest(b"")
