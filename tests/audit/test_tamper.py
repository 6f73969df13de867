"""Tampering with the access log, as someone with write access to the SQLite file or the PostgreSQL schema
would (a database owner first disables the triggers), and what `anss-gateway audit verify` says; exports
verified offline by the code and by the verifier printed in docs/merkle-log.md, which must agree.

Every test runs on both stores (``log`` is parametrised; PostgreSQL in a fresh schema of the real server,
configured through ``[storage]``'s environment variables as an operator would). The log under test: 160
entries, signed tree heads of size 100 and 150 (by the gateway key of the test's state directory, which
`audit verify` trusts through the configuration), 10 entries after the last head.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.audit import AccessLog, log_id_for
from gateway.audit import merkle as m
from gateway.audit.aggregates import COUNTERS, KEY_COLUMNS, accumulate, entry_deltas
from gateway.audit.offline import ExportInvalid, verify_export_file, verify_export_lines
from gateway.audit.query import LogQuery
from gateway.audit.recompute import NODE_LEVEL
from gateway.audit.record import AccessRecord
from gateway.cli.main import main
from gateway.config.settings import DSN_ENV, Settings, load
from gateway.crypto import keys
from gateway.crypto.keyring import load_signing_keys
from gateway.stores import backends as storage
from gateway.stores.postgres import PostgresTarget
from tests.audit.pg_support import dba, fresh_schema
from tests.audit.tamper_support import sql_blob, sql_replace

DOC = Path(__file__).resolve().parents[2] / "docs" / "merkle-log.md"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def doc_verifier() -> Callable[[list[str], dict[str, Any]], tuple[int, bytes]]:
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text[text.index("## 7. Reference verifier"):], re.S)
    assert code
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)  # the published verifier, as printed
    verify: Callable[[list[str], dict[str, Any]], tuple[int, bytes]] = namespace["verify_export"]
    return verify


DOC_VERIFY = doc_verifier()


def record(i: int) -> AccessRecord:
    return AccessRecord(time=(T0 + timedelta(seconds=i)).isoformat(timespec="microseconds"),
                        request_id=f"req-{i:05d}", method="POST", path="/v1/verifications", status=200,
                        outcome="answered", latency_ms=2.5, client="anss.asd", purpose="asd.eligibility",
                        case_ref=f"CASE-{i:05d}", checks=("identity", "household"), subject=f"{i:064x}",
                        sources=(("civil_registry", "ok"),))


BACKENDS = ["sqlite", "postgres"]
INDEX_TABLES = ("access_index", "access_index_checks", "access_index_sources")  # the search index
REFUSED = (sqlite3.DatabaseError, psycopg.Error)  # what a trigger raises, in either database


class Log:
    """The configured gateway's log: a temporary state directory and, for PostgreSQL, a fresh schema.

    ``environment`` is what the commands see (the test puts it in ``os.environ``); ``sql`` tampers as a
    database owner would, with ``blob`` and ``replace`` spelling the values in the database's own SQL."""

    def __init__(self, state: Path, target: PostgresTarget | None = None) -> None:
        self.state, self.target = state, target
        self.environment = {"ANSS_GATEWAY_STATE_DIR": str(state)}
        if target is not None:
            self.environment |= {"ANSS_GATEWAY_STORAGE_BACKEND": "postgres", DSN_ENV: target.dsn,
                                 "ANSS_GATEWAY_DATABASE_SCHEMA": target.schema}
        self.settings: Settings = load(env=self.environment)
        self.key = load_signing_keys(self.settings)[0]
        self.log_id = log_id_for(self.settings.gateway_id)

    async def build(self, n: int = 160, heads: tuple[int, ...] = (100, 150)) -> None:
        async def fill(store: AccessLog) -> None:
            for i in range(n):
                await store.append(record(i))
                if i + 1 in heads:
                    assert await store.issue_tree_head(self.key, self.log_id) is not None

        await self.run(fill)

    async def run(self, fn: Callable[[AccessLog], Any]) -> Any:
        store = storage.access_log(self.settings)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    def blob(self, data: bytes) -> str:
        return sql_blob(self.target, data)

    def replace(self, column: str, old: str, new: str) -> str:
        """SQL for ``column`` (bytes) with ``old`` replaced by ``new``."""
        return sql_replace(self.target, column, old, new)

    def sql(self, *statements: str, drop_triggers: bool = True) -> None:
        if self.target is not None:  # a database owner can disable our triggers; the tree still tells
            dba(self.target, *statements, disable_triggers=drop_triggers)
            return
        conn = sqlite3.connect(self.settings.audit_database, isolation_level=None)
        try:  # an attacker with file access can drop our triggers; the tree still tells
            if drop_triggers:
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                    conn.execute(f"DROP TRIGGER {name}")
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()

    def hourly_inserts(self) -> list[str]:
        """The INSERTs of the hourly aggregates recounted from the entries left (what a forger would write)."""
        counted: dict[Any, list[int]] = {}
        for _, entry, _, _ in self.rows():
            if entry is not None:
                accumulate(counted, entry_deltas(bytes(entry)))
        columns = ", ".join((*KEY_COLUMNS, *COUNTERS))
        return [f"INSERT INTO access_hourly ({columns}) VALUES ({key[0]}, "
                + ", ".join(f"'{v}'" for v in key[1:]) + ", " + ", ".join(map(str, counts)) + ")"
                for key, counts in counted.items()]

    def rows(self) -> list[tuple[int, bytes, bytes, bytes]]:
        query = "SELECT idx, entry, leaf_hash, tree_root FROM access_log ORDER BY idx"
        if self.target is not None:
            with self.target.connect_sync() as pg:
                return pg.execute(query).fetchall()
        conn = sqlite3.connect(self.settings.audit_database)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()

    def jwks_file(self, capsys: pytest.CaptureFixture[str]) -> Path:
        """The JWKS as the operator publishes it (`anss-gateway keys jwks`)."""
        capsys.readouterr()
        assert main(["keys", "jwks"]) == 0
        path = self.state / "jwks.json"
        path.write_text(capsys.readouterr().out, encoding="utf-8")
        return path


LogFactory = Callable[[str], Log]


@pytest.fixture(params=BACKENDS)
def new_log(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LogFactory]:
    """``new_log(name)``: an empty log of the test's backend, configured for the commands from now on."""
    with ExitStack() as cleanup:

        def make(name: str) -> Log:
            target = cleanup.enter_context(fresh_schema()) if request.param == "postgres" else None
            made = Log(tmp_path / name, target)
            for variable, value in made.environment.items():
                monkeypatch.setenv(variable, value)
            return made

        yield make


@pytest.fixture
def log(new_log: LogFactory) -> Log:
    the_log = new_log("state")
    asyncio.run(the_log.build())
    return the_log


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def broken_at(capsys: pytest.CaptureFixture[str], index: int, *words: str) -> str:
    code, out = verify(capsys)
    assert code == 1, out
    assert out.startswith(f"access log BROKEN at entry {index}: "), out
    for word in words:
        assert word in out, out
    return out


# --- the database ---------------------------------------------------------------------------------------------------


def test_a_clean_log_verifies(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = verify(capsys)
    assert code == 0, out
    assert "intact" in out and "160 entries (0 pruned), 2 signed tree heads" in out
    assert "latest signed tree head: size 150" in out and "10 entries after it are not signed yet" in out


def test_sql_cannot_change_the_log_with_the_triggers_in_place(log: Log) -> None:
    truncations = [f"TRUNCATE {t}" for t in ("access_log", "tree_heads", "merkle_nodes", "meta")] if log.target else []
    for statement in (f"UPDATE access_log SET entry = {log.blob(b'0')} WHERE idx = 1",
                      "UPDATE access_log SET leaf_hash = leaf_hash WHERE idx = 1",
                      f"UPDATE access_log SET entry = NULL, leaf_hash = {log.blob(b'0')} WHERE idx = 1",
                      "UPDATE access_log SET idx = 1000 WHERE idx = 159",
                      "DELETE FROM access_log WHERE idx = 159",
                      "UPDATE tree_heads SET timestamp_ms = 0", "DELETE FROM tree_heads",
                      f"UPDATE merkle_nodes SET hash = {log.blob(b'0')}", "DELETE FROM merkle_nodes",
                      "UPDATE meta SET value = '3'", "DELETE FROM meta", *truncations):
        with pytest.raises(REFUSED, match="append-only"):
            log.sql(statement, drop_triggers=False)
    log.sql("UPDATE access_log SET entry = NULL WHERE idx = 0", drop_triggers=False)  # what pruning does


def test_an_altered_field_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql(f"UPDATE access_log SET entry = {log.replace('entry', 'CASE-00037', 'CASE-99999')} WHERE idx = 37")
    broken_at(capsys, 37, "altered")


def test_an_altered_field_with_its_leaf_hash_recomputed_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    forged = record(37).canonical().replace(b"CASE-00037", b"CASE-99999")
    log.sql(f"UPDATE access_log SET entry = {log.blob(forged)}, leaf_hash = {log.blob(m.leaf_hash(forged))} "
            "WHERE idx = 37")
    broken_at(capsys, 37, "rewritten")


def test_a_deleted_row_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql("DELETE FROM access_log WHERE idx = 42")
    broken_at(capsys, 42, "entry 42 is missing")


def test_swapped_rows_are_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql("UPDATE access_log SET idx = -1 WHERE idx = 20", "UPDATE access_log SET idx = 20 WHERE idx = 90",
            "UPDATE access_log SET idx = 90 WHERE idx = -1")
    broken_at(capsys, 20, "moved")


def test_an_inserted_row_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    forged = record(999).canonical()
    log.sql("UPDATE access_log SET idx = -idx - 1 WHERE idx >= 50", "UPDATE access_log SET idx = -idx WHERE idx < 0",
            f"INSERT INTO access_log VALUES (50, {log.blob(forged)}, {log.blob(m.leaf_hash(forged))}, "
            "(SELECT tree_root FROM access_log WHERE idx = 51))")
    broken_at(capsys, 50, "inserted")


def test_a_truncated_tail_is_caught_against_the_last_signed_head(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql("DELETE FROM access_log WHERE idx >= 140")
    broken_at(capsys, 140, "truncated after index 139", "signed tree head of size 150")


def test_the_tail_after_the_last_head_is_only_as_safe_as_the_file(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    """What the cadence is for: entries after the last signed head can be cut off unnoticed (the next head,
    due within `tree_head_interval_s` or `tree_head_max_entries`, closes that window) — if the search index and
    the hourly aggregates are rewritten along with them, since both still describe them otherwise."""
    log.sql("DELETE FROM access_log WHERE idx >= 150")
    broken_at(capsys, 150, "the search index describes entry 150, which the log does not hold")
    log.sql(*(f"DELETE FROM {table} WHERE idx >= 150" for table in INDEX_TABLES))
    code, out = verify(capsys)
    assert code != 0 and "hourly aggregates" in out, "the aggregates still count the cut entries"
    log.sql("DELETE FROM access_hourly")  # and recounted from what is left: derived data, no signature
    log.sql(*log.hourly_inserts())
    assert verify(capsys)[0] == 0


def test_a_truncation_that_removes_a_stored_subtree_is_caught_even_before_a_head(
        new_log: LogFactory, capsys: pytest.CaptureFixture[str]) -> None:
    unsigned = new_log("unsigned")
    asyncio.run(unsigned.build(140, heads=()))
    unsigned.sql("DELETE FROM access_log WHERE idx >= 100")  # the subtree over 64..127 was stored
    broken_at(capsys, 100, "truncated after index 99", "subtree covers entries up to 127")


def test_a_forger_who_rewrites_every_hash_is_caught_by_the_signed_head(log: Log,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rows = log.rows()
    rows[37] = (37, rows[37][1].replace(b"CASE-00037", b"CASE-99999"), b"", b"")
    edge, statements = m.CompactRange(), ["DELETE FROM merkle_nodes"]
    for idx, entry, _, _ in rows:
        leaf = m.leaf_hash(entry)
        for node in edge.append(leaf):
            if node.level >= NODE_LEVEL:
                statements.append(f"INSERT INTO merkle_nodes VALUES ({node.level}, {node.index}, "
                                  f"{log.blob(node.hash)})")
        statements.append(f"UPDATE access_log SET entry = {log.blob(entry)}, leaf_hash = {log.blob(leaf)}, "
                          f"tree_root = {log.blob(edge.root())} WHERE idx = {idx}")
    log.sql(*statements)
    broken_at(capsys, 0, "entries 0..99 do not match the signed tree head of size 100")
    # ... and re-signing the heads needs the gateway's key
    intruder = keys.generate()
    for size in (100, 150):
        head = m.TreeHead(size, m.root([m.leaf_hash(r[1]) for r in rows[:size]]), 1, log.log_id).sign(intruder)
        log.sql(f"UPDATE tree_heads SET root_hash = {log.blob(head.head.root_hash)}, signature = '{head.signature}' "
                f"WHERE tree_size = {size}")
    broken_at(capsys, 0, "does not verify against the gateway's keys")


def test_an_intruders_head_is_refused(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    leaves = [r[2] for r in log.rows()]
    head = m.TreeHead(160, m.root(leaves), 2**42, log.log_id).sign(keys.generate())
    log.sql(f"INSERT INTO tree_heads VALUES (160, {log.blob(head.head.root_hash)}, {2**42}, '{log.log_id}', "
            f"'{head.signature}')")
    broken_at(capsys, 150, "does not verify", "unknown kid")


def test_a_stored_subtree_that_was_changed_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql(f"UPDATE merkle_nodes SET hash = {log.blob(bytes(32))} WHERE level = 6 AND idx = 1")
    broken_at(capsys, 64, "subtree over entries 64..127 does not match")


def test_a_payload_removed_out_of_order_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql("UPDATE access_log SET entry = NULL WHERE idx = 60", drop_triggers=False)  # the trigger allows it...
    broken_at(capsys, 60, "out of order")  # ... but pruning only ever removes the oldest entries


def test_a_changed_column_type_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite stores any type in any column; PostgreSQL cannot, but a value of another size is the same fault."""
    if log.target is None:
        log.sql("UPDATE access_log SET leaf_hash = hex(leaf_hash) WHERE idx = 12")
    else:
        log.sql("UPDATE access_log SET leaf_hash = convert_to(encode(leaf_hash, 'hex'), 'UTF8') WHERE idx = 12")
    broken_at(capsys, 12, "not stored as written")


def test_heads_signed_by_a_retired_key_still_verify(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "rotate"]) == 0
    rotated = load_signing_keys(log.settings)[0]
    assert rotated.kid != log.key.kid
    asyncio.run(log.run(lambda s: s.issue_tree_head(rotated, log.log_id)))
    code, out = verify(capsys)
    assert code == 0 and "3 signed tree heads" in out, out


# --- the search index -----------------------------------------------------------------------------------------------
# It is not part of the tree, but every row derives from an entry the tree vouches for: `audit verify` checks it
# against the entries in the same pass, so rows removed, changed or made up cannot hide an entry from searches.


def found(log: Log, **filters: Any) -> list[int]:
    """The indices a search finds, newest first (what an officer's or a citizen's page would list)."""
    async def go(store: AccessLog) -> list[int]:
        return [hit.index for hit in (await store.search(LogQuery(limit=200, **filters))).hits]

    found_: list[int] = asyncio.run(log.run(go))
    return found_


def test_an_entry_removed_from_the_index_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    assert found(log, case_ref="CASE-00041") == [41]
    log.sql("DELETE FROM access_index WHERE idx = 41")
    assert found(log, case_ref="CASE-00041") == [], "what the tampering does: no search finds the entry"
    broken_at(capsys, 41, "the search index misses entry 41: officers' searches would not find it")


@pytest.mark.parametrize(("column", "value", "what"), [
    ("client", "'another.client'", "client"), ("subject", f"'{7:064x}'", "subject"), ("purpose", "NULL", "purpose"),
    ("case_ref", "'CASE-99999'", "case reference"), ("outcome", "'refused'", "outcome"),
    ("time_us", "time_us + 3600000000", "time"),
])
def test_an_altered_index_field_is_named(log: Log, capsys: pytest.CaptureFixture[str], column: str, value: str,
                                         what: str) -> None:
    log.sql(f"UPDATE access_index SET {column} = {value} WHERE idx = 77")
    broken_at(capsys, 77, f"the search index gives entry 77 another {what} than the entry has")


def test_an_altered_time_high_water_mark_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    """A time window starts at the entry whose mark is the first to reach its start: a mark lowered below the
    marks before it moves that start past entries that belong in the window."""
    since, until = T0 + timedelta(seconds=59.5), T0 + timedelta(seconds=70)
    assert found(log, since=since, until=until) == list(range(69, 59, -1))
    log.sql("UPDATE access_index SET time_hw = time_hw - 5300000 WHERE idx = 65")  # 59.7 s: reaches 59.5 s first
    assert found(log, since=since, until=until) == list(range(69, 64, -1)), "the window misses entries 60..64"
    broken_at(capsys, 65, "time high-water mark at entry 65 does not follow from the entries' times")


@pytest.mark.parametrize(("statement", "index", "words"), [
    ("INSERT INTO access_index_checks (name, idx) VALUES ('employment', 12)", 12, "gives entry 12 a check the entry "
                                                                                 "does not name"),
    ("DELETE FROM access_index_checks WHERE name = 'household' AND idx = 13", 13, "misses a check of entry 13"),
    ("INSERT INTO access_index_sources (name, idx) VALUES ('health', 14)", 14, "gives entry 14 a source the entry "
                                                                              "does not name"),
    ("DELETE FROM access_index_sources WHERE idx = 15", 15, "misses a source of entry 15"),
    ("UPDATE access_index_sources SET name = 'health' WHERE idx = 16", 16, "misses a source of entry 16"),
])
def test_a_check_or_source_row_added_or_removed_is_named(log: Log, capsys: pytest.CaptureFixture[str],
                                                         statement: str, index: int, words: str) -> None:
    log.sql(statement)
    broken_at(capsys, index, words)


def test_index_rows_of_an_entry_the_log_does_not_hold_are_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql("INSERT INTO access_index (idx, time_us, time_hw, client) SELECT 500, time_us, time_hw, client "
            "FROM access_index WHERE idx = 159")
    broken_at(capsys, 500, "the search index describes entry 500, which the log does not hold")
    log.sql("INSERT INTO access_index_sources (name, idx) VALUES ('health', 170)")
    broken_at(capsys, 170, "the search index describes entry 170")


def test_index_rows_left_behind_by_pruning_are_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    assert asyncio.run(log.run(lambda s: s.prune(T0 + timedelta(seconds=120)))) == 120
    assert verify(capsys)[0] == 0, "retention removes the index rows with the payloads"
    log.sql("INSERT INTO access_index_checks (name, idx) VALUES ('identity', 30)")
    broken_at(capsys, 30, "the search index still holds pruned entry 30")


def test_after_pruning_the_first_kept_mark_must_still_reach_its_own_time(log: Log,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The mark of the first kept entry also carries the pruned entries' times, which are gone: it is checked to
    reach the entry's own time (what keeps time windows complete), and every later mark exactly."""
    assert asyncio.run(log.run(lambda s: s.prune(T0 + timedelta(seconds=120)))) == 120
    log.sql("UPDATE access_index SET time_hw = time_hw + 1 WHERE idx = 130")
    broken_at(capsys, 130, "time high-water mark at entry 130")
    log.sql("UPDATE access_index SET time_hw = time_hw - 1 WHERE idx = 130",
            "UPDATE access_index SET time_hw = time_us - 1 WHERE idx = 120")
    broken_at(capsys, 120, "time high-water mark at entry 120")


def test_a_payload_pruned_without_its_index_rows_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql("UPDATE access_log SET entry = NULL WHERE idx = 0", drop_triggers=False)  # pruning's own statement
    broken_at(capsys, 0, "the search index still holds pruned entry 0: retention removed the entry's payload")


def test_a_dropped_index_table_is_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql("DROP TABLE access_index_sources CASCADE" if log.target else "DROP TABLE access_index_sources")
    broken_at(capsys, 0, "the search index misses a source of entry 0")


def test_the_lower_index_is_reported_and_the_tree_at_the_same_index(log: Log,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    log.sql(f"UPDATE access_log SET entry = {log.replace('entry', 'CASE-00060', 'CASE-99999')} WHERE idx = 60",
            "DELETE FROM access_index WHERE idx = 90")
    broken_at(capsys, 60, "altered")  # the tree breaks first
    log.sql("DELETE FROM access_index WHERE idx = 30")
    broken_at(capsys, 30, "the search index misses entry 30")  # now the index does
    log.sql(f"UPDATE access_log SET entry = {log.replace('entry', 'CASE-00030', 'CASE-99999')} WHERE idx = 30")
    broken_at(capsys, 30, "altered")  # both at 30: the tree's reason, which explains the index's too


@pytest.mark.parametrize("new_log", ["sqlite"], indirect=True)  # PostgreSQL's column types refuse these values
def test_sqlite_index_values_of_another_type_are_named(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite stores any type in any column: a name stored as bytes matches no search, an index not a number
    describes no entry. PostgreSQL's column types refuse both."""
    log.sql("UPDATE access_index_checks SET name = CAST(name AS BLOB) WHERE name = 'identity' AND idx = 5")
    assert 5 not in found(log, check="identity")
    broken_at(capsys, 5, "misses a check of entry 5")
    log.sql("UPDATE access_index_checks SET name = 'identity' WHERE idx = 5 AND typeof(name) = 'blob'",
            "INSERT INTO access_index_checks (name, idx) VALUES ('identity', 'x')")
    broken_at(capsys, 159, "whose entry index is not an integer")  # found as the walk reaches the last entry


# --- retention ------------------------------------------------------------------------------------------------------


def test_pruning_then_verify_still_passes_and_a_pruned_entry_is_proven(log: Log,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    entry = record(42).canonical()
    assert asyncio.run(log.run(lambda s: s.prune(T0 + timedelta(seconds=120)))) == 120
    code, out = verify(capsys)
    assert code == 0 and "160 entries (120 pruned)" in out, out

    async def prove(store: AccessLog) -> tuple[list[bytes], m.SignedTreeHead | None, bytes | None]:
        return await store.inclusion_proof(42, 150), await store.tree_head(150), await store.entry(42)

    proof, head, stored = asyncio.run(log.run(prove))
    assert stored is None and head is not None
    assert m.verify_inclusion(m.leaf_hash(entry), 42, 150, proof, head.head.root_hash)


# --- exports --------------------------------------------------------------------------------------------------------


def export(log: Log, capsys: pytest.CaptureFixture[str], *args: str) -> Path:
    out = log.state / "export.jsonl"
    capsys.readouterr()
    assert main(["audit", "export", "--out", str(out), *args]) == 0
    assert "exported entries 0.." in capsys.readouterr().out
    return out


def test_an_export_verifies_offline_with_the_documented_algorithm(log: Log,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = export(log, capsys)
    jwks = log.jwks_file(capsys)
    code, said = verify(capsys, "--export", str(out), "--jwks", str(jwks))
    assert code == 0 and "entries 0..159 (0 pruned), 3 signed tree heads" in said, said
    lines = out.read_text(encoding="utf-8").splitlines()
    size, root = DOC_VERIFY(lines, json.loads(jwks.read_text()))
    summary = verify_export_file(out, json.loads(jwks.read_text()))
    assert (size, root) == (summary.tree_size, summary.root_hash) == (160, m.root([r[2] for r in log.rows()]))
    assert not list(out.parent.glob(".*.partial")), "written through a temporary file"


def test_an_export_needs_the_verifiers_own_jwks(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    out = export(log, capsys)
    code, said = verify(capsys, "--export", str(out))
    assert code == 2 and "--jwks" in said
    stranger = out.parent / "stranger.json"
    stranger.write_text(json.dumps(keys.jwks([keys.generate()])))
    code, said = verify(capsys, "--export", str(out), "--jwks", str(stranger))
    assert code == 1 and "does not verify" in said


def test_a_tampered_export_is_broken_at_the_entry(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    out = export(log, capsys)
    jwks = log.jwks_file(capsys)
    out.write_text(out.read_text().replace('"CASE-00037"', '"CASE-00038"'))
    code, said = verify(capsys, "--export", str(out), "--jwks", str(jwks))
    assert code == 1 and said.startswith("export BROKEN at entry 37: entry 37: "), said


def test_an_export_of_a_tampered_log_fails_at_the_same_entry(log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql(f"UPDATE access_log SET entry = {log.replace('entry', 'CASE-00037', 'CASE-99999')} WHERE idx = 37")
    out = export(log, capsys, "--no-sign")
    with pytest.raises(ExportInvalid, match=r"^entry 37: does not match its leaf_hash") as caught:
        verify_export_file(out, keys.jwks([log.key]))
    assert caught.value.index == 37
    with pytest.raises(ValueError, match=r"^entry 37: "):
        DOC_VERIFY(out.read_text().splitlines(), keys.jwks([log.key]))


def test_export_refuses_a_log_that_cannot_be_signed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     log: Log) -> None:
    log.sql("DELETE FROM access_log WHERE idx >= 140")
    capsys.readouterr()
    assert main(["audit", "export", "--out", str(tmp_path / "x.jsonl")]) == 1
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


# --- the code's offline verifier agrees with the printed one --------------------------------------------------------


def pruned_export(log: Log) -> list[str]:
    import io

    async def go(store: AccessLog) -> str:
        await store.prune(T0 + timedelta(seconds=30))
        await store.issue_tree_head(log.key, log.log_id)
        out = io.StringIO()
        await store.export(out)
        return out.getvalue()

    return asyncio.run(log.run(go)).splitlines()


def at(lines: list[str], kind: str, index: int) -> int:
    return next(n for n, x in enumerate(lines) if x.startswith(f'{{"type":"{kind}","index":{index},'))


def replaced(lines: list[str], n: int, line: str) -> list[str]:
    return [*lines[:n], line, *lines[n + 1:]]


def entry_line(index: int, entry: bytes) -> str:
    leaf = keys.b64url(m.leaf_hash(entry))
    return f'{{"type":"entry","index":{index},"leaf_hash":"{leaf}","entry":{entry.decode()}}}'


def pruned_line(index: int, leaf: bytes) -> str:
    return f'{{"type":"pruned","index":{index},"leaf_hash":"{keys.b64url(leaf)}"}}'


TAMPERINGS: dict[str, Callable[[list[str]], list[str]]] = {
    "none": lambda x: x,
    "changed byte": lambda x: [y.replace('"CASE-00077"', '"CASE-00078"') for y in x],
    "changed entry and leaf hash": lambda x: replaced(
        x, at(x, "entry", 77), entry_line(77, record(77).canonical().replace(b"CASE-00077", b"CASE-00078"))),
    "deleted entry": lambda x: [y for n, y in enumerate(x) if n != at(x, "entry", 77)],
    "deleted entry and its proof": lambda x: [y for n, y in enumerate(x) if n not in (at(x, "entry", 77),
                                                                                     at(x, "entry", 77) + 1)],
    "swapped entries": lambda x: replaced(replaced(x, at(x, "entry", 40), x[at(x, "entry", 90)]),
                                          at(x, "entry", 90), x[at(x, "entry", 40)]),
    "inserted entry": lambda x: [*x[:at(x, "entry", 77)], entry_line(77, record(999).canonical()),
                                 *x[at(x, "entry", 77):]],
    "appended entry": lambda x: [*x, entry_line(160, record(999).canonical())],
    "truncated": lambda x: [y for n, y in enumerate(x) if n < at(x, "entry", 150) or '"tree_head"' in y],
    "entry turned into a pruned line": lambda x: replaced(x, at(x, "entry", 30), pruned_line(
        30, m.leaf_hash(record(30).canonical()))),
    "pruned after a kept entry": lambda x: replaced(x, at(x, "entry", 77), pruned_line(
        77, m.leaf_hash(record(77).canonical()))),
    "pruned line with another leaf hash": lambda x: replaced(x, at(x, "pruned", 10), pruned_line(
        10, m.leaf_hash(record(11).canonical()))),
    "pruned line renumbered": lambda x: replaced(x, at(x, "pruned", 10), x[at(x, "pruned", 10)].replace(
        '"index":10,', '"index":11,')),
    "head root changed": lambda x: [y.replace('"tree_size":150,"root_hash":"', '"tree_size":150,"root_hash":"A')
                                    for y in x],
    "unknown line": lambda x: [*x, '{"type":"comment"}'],
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_the_code_and_the_printed_verifier_agree(log: Log, tampering: str) -> None:
    lines = TAMPERINGS[tampering](pruned_export(log))
    jwks = keys.jwks([log.key])
    try:
        expected: tuple[int, bytes] | str = DOC_VERIFY(lines, jwks)
    except ValueError as exc:
        expected = str(exc)
    except Exception:  # a JOSE error: a head that does not verify
        expected = "a tree head does not verify"
    try:
        summary = verify_export_lines(lines, jwks)
        got: tuple[int, bytes] | str = (summary.tree_size, summary.root_hash)
    except ExportInvalid as exc:
        got = str(exc)
    if isinstance(expected, tuple) or expected.startswith("entry "):
        assert got == expected, "the same result, or the same first bad entry for the same reason"
    else:  # a fault that is not an entry's (a head, a line type): both refuse, in their own words
        assert isinstance(got, str), (got, expected)
    if tampering in ("none", "entry turned into a pruned line"):
        assert isinstance(got, tuple), "pruning the next-oldest entry is what retention does"
        assert summary.pruned == (30 if tampering == "none" else 31)


def _head_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith('{"type":"tree_head"')]


def test_an_export_keeps_its_heads_in_order_of_size_and_time_and_its_indices_integers(
        log: Log, capsys: pytest.CaptureFixture[str]) -> None:
    """The format says heads come by strictly increasing size, their times never go back, an index is an
    integer: an export breaking any of these is refused by both verifiers (the command's and the printed one)."""
    out = export(log, capsys, "--no-proofs")
    jwks = keys.jwks([log.key])
    lines = out.read_text(encoding="utf-8").splitlines()
    heads = _head_lines(lines)
    assert len(heads) >= 2
    first, last = heads[0], heads[-1]
    moved = [*lines[:first], lines[last], *lines[first:last], *lines[last + 1:]]  # the last head read first
    doubled = [*lines[:last + 1], lines[last], *lines[last + 1:]]  # the same head twice
    second = json.loads(lines[heads[1]])
    earlier = m.TreeHead(second["tree_size"], keys.b64url_decode(second["root_hash"]), 0,
                         second["log_id"]).sign(log.key).to_json()
    backwards = list(lines)
    backwards[heads[1]] = json.dumps(earlier, separators=(",", ":"))  # signed, but dated before the first head
    seven = next(i for i, line in enumerate(lines) if line.startswith('{"type":"entry","index":7,'))
    floating = list(lines)
    floating[seven] = lines[seven].replace('"index":7,', '"index":7.0,', 1)
    out_of_order = "not in order of size and time"
    for tampered, message in ((moved, out_of_order), (doubled, out_of_order), (backwards, out_of_order),
                              (floating, "entry 7: the line says index 7.0")):
        with pytest.raises(ValueError, match=message):
            DOC_VERIFY(tampered, jwks)
        with pytest.raises(ExportInvalid, match=message):
            verify_export_lines(tampered, jwks)
    assert DOC_VERIFY(lines, jwks)[0] == verify_export_lines(lines, jwks).tree_size


def test_the_documented_usage_reads_entries_holding_unicode_line_separators(
        new_log: LogFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """An entry may hold U+2028, U+2029 and U+0085 unescaped (a request path is logged as sent): the usage line
    printed under the reference verifier must still split the export at LF only."""
    odd = new_log("odd")

    async def fill(store: AccessLog) -> None:
        for i in range(5):
            await store.append(replace(record(i), path=f"/v1/x\u2028{i}\u2029y\u0085z"))
        assert await store.issue_tree_head(odd.key, odd.log_id) is not None

    asyncio.run(odd.run(fill))
    out = export(odd, capsys)
    assert "\u2028" in out.read_text(encoding="utf-8")
    usage = re.search(r"Usage: `(verify_export\(.*?\))`", DOC.read_text(encoding="utf-8"))
    assert usage
    expression = usage.group(1).replace('"export.jsonl"', repr(str(out)))
    size, root = eval(expression, {"verify_export": DOC_VERIFY, "jwks": keys.jwks([odd.key])})  # as printed
    assert size == 5 and len(root) == 32


def test_an_empty_export_verifies_and_says_it_holds_no_entries(new_log: LogFactory,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    empty = new_log("empty")

    async def nothing(store: AccessLog) -> None:
        assert await store.count() == 0

    asyncio.run(empty.run(nothing))  # (the gateway created its log, then answered nothing)
    out = empty.state / "export.jsonl"
    assert main(["audit", "export", "--out", str(out)]) == 0
    assert "exported no entry" in capsys.readouterr().out
    code, said = verify(capsys, "--export", str(out), "--jwks", str(empty.jwks_file(capsys)))
    assert code == 0 and said.startswith(f"export verifies ({out}): no entry (0 pruned)"), said
