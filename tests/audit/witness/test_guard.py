"""The gateway's high-water checkpoint and witness publication over the real stores (SQLite and PostgreSQL).

A forged database is modelled as another, independently written log put in the place of the real one (what an
operator able to write the database, but without the keys, can do): behind the high water, diverging from it,
or — with the high-water file deleted too — caught by a witness that holds the real checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from gateway.audit import AccessLog, AccessLogCorrupt
from gateway.audit import checkpoint as cp
from gateway.audit.heads import TreeHeadSigner
from gateway.audit.record import AccessRecord
from gateway.audit.witness.client import WitnessClient, WitnessEndpoint
from gateway.audit.witness.config import load_config
from gateway.audit.witness.guard import CheckpointArchive, LogGuard, load_checkpoint_key
from gateway.audit.witness.service import RunningWitness
from tests.audit.store_support import IMPLEMENTATIONS, KEY, LOG_ID, StoreFactory, opened_stores
from tests.audit.witness.support import running_witness, write_config

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ORIGIN = "anss.gov.ma/access-log"


def record(i: int, case: str = "CASE") -> AccessRecord:
    return AccessRecord(time=(T0 + timedelta(seconds=i)).isoformat(timespec="microseconds"),
                        request_id=f"req-{i:05d}", method="POST", path="/v1/verifications", status=200,
                        outcome="answered", latency_ms=1.0, client="anss.asd", purpose="asd.eligibility",
                        case_ref=f"{case}-{i:05d}", checks=("identity",), subject=f"{i:064x}",
                        sources=(("civil_registry", "ok"),))


async def fill(store: AccessLog, start: int, end: int, case: str = "CASE") -> None:
    for i in range(start, end):
        await store.append(record(i, case))


@pytest.fixture(params=IMPLEMENTATIONS)
async def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def real(kind: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    (tmp_path / "real").mkdir()
    async with opened_stores(kind, tmp_path / "real") as new:
        yield new


@pytest.fixture
async def forged(kind: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    (tmp_path / "forged").mkdir()
    async with opened_stores(kind, tmp_path / "forged") as new:
        yield new


@pytest.fixture
async def witness(tmp_path: Path) -> AsyncIterator[RunningWitness]:
    (tmp_path / "witness").mkdir()
    key = load_checkpoint_key(tmp_path / "keys" / "checkpoint-key.pem")
    config = write_config(tmp_path / "witness", vkeys=(cp.verifier_key(ORIGIN, key).encode(),))
    async with running_witness(load_config(config)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Gateway:
    """What a gateway process holds: its key and high-water file (kept), its database (replaceable)."""

    def __init__(self, tmp_path: Path, witness: RunningWitness | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.key = load_checkpoint_key(tmp_path / "keys" / "checkpoint-key.pem")
        self.high_water = tmp_path / "keys" / "checkpoint-key.high-water"
        self.archive_path = tmp_path / "checkpoints.sqlite3"
        self.witness, self.session = witness, session

    def guard(self, store: AccessLog) -> LogGuard:
        client = None
        if self.witness is not None and self.session is not None:
            client = WitnessClient(self.session, [WitnessEndpoint(self.witness.url, self.witness.witness.vkey)], 1)
        return LogGuard(store, ORIGIN, self.key, self.high_water, CheckpointArchive(self.archive_path),
                        witnesses=lambda: client)

    def signer(self, store: AccessLog, guard: LogGuard) -> TreeHeadSigner:
        return TreeHeadSigner(store, lambda: KEY, LOG_ID, interval_s=3600, max_entries=1, guard=guard)


async def test_heads_are_published_and_the_high_water_follows(
        real: StoreFactory, tmp_path: Path, witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    gateway = Gateway(tmp_path, witness, session)
    store = await real()
    guard = gateway.guard(store)
    try:
        signer = gateway.signer(store, guard)
        for end in (5, 12, 30):
            await fill(store, await store.count(), end)
            signed = await signer.tick()
            assert signed is not None and signed.head.tree_size == end
            held = await guard.latest()
            assert held is not None and (held[0].size, held[0].root_hash) == (end, signed.head.root_hash)
            # the high water carries the witness's cosignature, and the archive the same note
            assert [c.name for c in cp.verify_cosignatures(held[1], [witness.witness.vkey])] == ["cndp.ma/witness"]
            assert await guard.archive.note(end) == held[1]
        await guard.check()
        assert guard.corrupt is None
        witnessed = await witness.witness.state.held(ORIGIN)
        assert witnessed is not None and witnessed.size == 30
    finally:
        await guard.archive.close()


async def test_a_database_behind_the_high_water_is_refused(
        real: StoreFactory, forged: StoreFactory, tmp_path: Path) -> None:
    gateway = Gateway(tmp_path)
    store = await real()
    guard = gateway.guard(store)
    await fill(store, 0, 40)
    assert await gateway.signer(store, guard).tick() is not None
    await guard.archive.close()
    # the file replaced by the first 25 entries (the tail cut with its heads), and the gateway restarted
    cut = await forged()
    await fill(cut, 0, 25)
    restarted = gateway.guard(cut)
    try:
        with pytest.raises(AccessLogCorrupt, match="25 entries, fewer than the 40"):
            await restarted.check()
        assert restarted.corrupt is not None
        # and it signs nothing: the signer's round fails before the store is asked
        with pytest.raises(AccessLogCorrupt):
            await gateway.signer(cut, restarted).tick()
        assert await cut.latest_tree_head() is None
        # growing past the high water does not help: it stays corrupt until restarted on a good database
        await fill(cut, 25, 45)
        with pytest.raises(AccessLogCorrupt, match="fewer than the 40"):
            await restarted.check()
    finally:
        await restarted.archive.close()


async def test_a_rewritten_database_is_refused_even_when_it_is_longer(
        real: StoreFactory, forged: StoreFactory, tmp_path: Path) -> None:
    gateway = Gateway(tmp_path)
    store = await real()
    guard = gateway.guard(store)
    await fill(store, 0, 40)
    assert await gateway.signer(store, guard).tick() is not None
    await guard.archive.close()
    rewritten = await forged()  # the same 40 entries but one case's altered, then more
    await fill(rewritten, 0, 10)
    await fill(rewritten, 10, 11, case="OTHER")
    await fill(rewritten, 11, 60)
    restarted = gateway.guard(rewritten)
    try:
        with pytest.raises(AccessLogCorrupt, match="size 40 is not the high-water checkpoint's: it was rewritten"):
            await restarted.check()
        with pytest.raises(AccessLogCorrupt):
            await gateway.signer(rewritten, restarted).tick()
        assert await rewritten.latest_tree_head() is None
    finally:
        await restarted.archive.close()


@pytest.mark.parametrize("forged_size", [30, 40, 50])
async def test_laundering_by_restart_is_caught_by_the_witness(
        real: StoreFactory, forged: StoreFactory, tmp_path: Path, witness: RunningWitness,
        session: aiohttp.ClientSession, forged_size: int) -> None:
    gateway = Gateway(tmp_path, witness, session)
    store = await real()
    guard = gateway.guard(store)
    await fill(store, 0, 40)
    assert await gateway.signer(store, guard).tick() is not None
    await guard.archive.close()
    high_water = gateway.high_water.read_text(encoding="utf-8")
    # a rewritten log without heads, and the high-water file deleted too: only the witness remembers
    gateway.high_water.unlink()
    laundered = await forged()
    await fill(laundered, 0, forged_size, "FORGED")
    restarted = gateway.guard(laundered)
    try:
        await restarted.check()  # nothing local to compare with
        with pytest.raises(AccessLogCorrupt, match=r"witness cndp\.ma/witness"):
            await gateway.signer(laundered, restarted).tick()
        assert restarted.corrupt is not None
        with pytest.raises(AccessLogCorrupt):
            await restarted.check()
    finally:
        await restarted.archive.close()
    held = await witness.witness.state.held(ORIGIN)
    assert held is not None and held.size == 40
    assert not gateway.high_water.exists()  # the forged checkpoint never became the high water
    assert cp.open_checkpoint(high_water, [restarted.vkey]).size == 40
