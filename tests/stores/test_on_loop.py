"""The guard of SQLite steps on the event loop (``gateway.stores.on_loop``): a second slow step soon after a first
takes the store's steps off the loop for a while, logged once; the replay cache and the consent registry still
answer meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.policy.consent import ConsentGrant, SqliteConsentStore
from gateway.stores import on_loop
from gateway.stores.on_loop import LoopGuard
from gateway.trust.replay import SqliteReplayCache
from tests.stores.conftest import captured


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slow_events(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == "sqlite_step_slow_on_event_loop"]


@pytest.fixture
def logs() -> Iterator[list[dict[str, object]]]:
    with captured(on_loop) as events:
        yield events


def test_a_slow_step_pauses_the_loop_steps_then_they_resume(logs: list[dict[str, object]]) -> None:
    clock = Clock()
    guard = LoopGuard("a_store", slow_s=0.005, pause_s=30.0, clock=clock)
    with guard.timed():
        clock.now += 0.001  # fast: nothing changes
    assert guard.allowed() and not slow_events(logs)
    with guard.timed():
        clock.now += 0.020  # slow, but the first: forgiven (a busy machine preempts the loop mid-step too)
    assert guard.allowed() and not slow_events(logs)
    clock.now += 11.0
    with guard.timed():
        clock.now += 0.020  # slow again, but more than 10 s later: forgiven again
    assert guard.allowed() and not slow_events(logs)
    clock.now += 5.0
    with guard.timed():
        clock.now += 0.020  # a second slow step within 10 s: off the loop for 30 s
    assert not guard.allowed()
    (event,) = slow_events(logs)
    assert (event["store"], event["elapsed_ms"], event["paused_s"]) == ("a_store", 20.0, 30.0)
    clock.now += 29.9
    assert not guard.allowed()
    clock.now += 0.2
    assert guard.allowed()


async def test_the_replay_cache_decides_on_its_thread_while_paused(tmp_path: Path,
                                                                  logs: list[dict[str, object]]) -> None:
    cache = SqliteReplayCache(tmp_path / "replay.sqlite3", on_loop=LoopGuard("replay_cache", slow_s=0.0))
    await cache.open()
    try:
        answers = [await cache.first_use("anss.asd", jti, time.time() + 60) for jti in ("a", "b", "a", "b", "c")]
    finally:
        await cache.close()
    assert answers == [True, True, False, False, True]
    assert len(slow_events(logs)) == 1, "two (slow) steps on the loop, then the thread for the pause"


def a_grant(citizen: str) -> ConsentGrant:
    now = datetime.now(UTC)
    return ConsentGrant(citizen=citizen, grantee="mhpv.housing", purpose="partner.social-housing",
                        checks=("identity",), valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
                        evidence="form ASD-12", granted_by="mhpv.housing", request_id=uuid.uuid4().hex)


async def test_a_consent_lookup_does_not_wait_behind_a_write(tmp_path: Path) -> None:
    """The registry's thread waits for another process's write lock; a lookup meanwhile answers at once."""
    path = tmp_path / "consents.sqlite3"
    store = SqliteConsentStore(path, busy_timeout_ms=5000)
    await store.open()
    citizen, other = (hashlib.sha256(n).hexdigest() for n in (b"c1", b"c2"))
    try:
        consent = await store.grant(a_grant(citizen))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            granting = asyncio.create_task(store.grant(a_grant(other)))  # waits on the thread for the lock
            await asyncio.sleep(0.1)
            began = time.monotonic()
            found = await store.find_valid(citizen, "mhpv.housing", "partner.social-housing", datetime.now(UTC),
                                           ("identity",))
            waited = time.monotonic() - began
            assert not granting.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await asyncio.wait_for(granting, 10)
        assert found == consent
        assert waited < 1.0, f"the lookup waited {waited:.2f} s behind the write"
    finally:
        await store.close()


async def test_consent_lookups_go_to_the_thread_while_paused(tmp_path: Path, logs: list[dict[str, object]]) -> None:
    store = SqliteConsentStore(tmp_path / "consents.sqlite3", on_loop=LoopGuard("consent_registry", slow_s=0.0))
    await store.open()
    citizen = hashlib.sha256(b"c1").hexdigest()
    try:
        consent = await store.grant(a_grant(citizen))
        found = [await store.find_valid(citizen, "mhpv.housing", "partner.social-housing", datetime.now(UTC),
                                        ("identity",)) for _ in range(4)]
    finally:
        await store.close()
    assert found == [consent] * 4
    assert len(slow_events(logs)) == 1
