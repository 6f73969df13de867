"""The replay-cache contract, run against every implementation on a real store (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from gateway.trust.replay import MIN_RETENTION_S, RedisReplayCache, ReplayCache, SqliteReplayCache
from tests.stores.conftest import Backend, RedisNamespace, alive

CLIENT = "anss.asd"


async def test_is_a_replay_cache(replay: Backend[ReplayCache]) -> None:
    assert isinstance(await replay.new(), ReplayCache)


async def test_first_use_then_replay(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    expires_at = alive()
    assert await cache.first_use(CLIENT, "jti-1", expires_at) is True
    assert await cache.first_use(CLIENT, "jti-1", expires_at) is False
    assert await cache.first_use(CLIENT, "jti-1", alive(120)) is False  # a new expiry does not launder a replay


async def test_same_jti_from_another_client_is_not_a_replay(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    assert await cache.first_use("anss.asd", "shared-jti", alive()) is True
    assert await cache.first_use("ministry.education", "shared-jti", alive()) is True
    assert await cache.first_use("ministry.education", "shared-jti", alive()) is False


async def test_another_jti_from_the_same_client_is_not_a_replay(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    assert await cache.first_use(CLIENT, "jti-a", alive()) is True
    assert await cache.first_use(CLIENT, "jti-b", alive()) is True


async def test_any_client_id_is_remembered(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    for client_id in ("ministère.éducation", "\udc80 lone surrogate", "", "x" * 1_000):
        assert await cache.first_use(client_id, "jti", alive()) is True
        assert await cache.first_use(client_id, "jti", alive()) is False


async def test_one_bad_call_does_not_fail_concurrent_ones(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    results = await asyncio.gather(
        *(cache.first_use(CLIENT, f"jti-{i}", math.nan if i == 5 else alive()) for i in range(10)),
        return_exceptions=True,
    )
    assert isinstance(results[5], ValueError)
    assert [r for i, r in enumerate(results) if i != 5] == [True] * 9


async def test_client_and_jti_boundaries_are_unambiguous(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    assert await cache.first_use("a:b", "c", alive()) is True
    assert await cache.first_use("a", "b:c", alive()) is True
    assert await cache.first_use("ab", "", alive()) is True
    assert await cache.first_use("a", "b", alive()) is True


@pytest.mark.parametrize(
    "jti",
    ["x" * 10_000, "\ud800 lone surrogate", "nul\x00byte", "emoji 🇲🇦", "*?[glob]", "line\nbreak"],
    ids=["10k", "surrogate", "nul", "emoji", "glob", "newline"],
)
async def test_any_client_chosen_jti_is_remembered(replay: Backend[ReplayCache], jti: str) -> None:
    cache = await replay.new()
    assert await cache.first_use(CLIENT, jti, alive()) is True
    assert await cache.first_use(CLIENT, jti, alive()) is False


async def test_an_expired_entry_does_not_block_reuse(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    expires_at = alive(1.0)
    assert await cache.first_use(CLIENT, "short-lived", expires_at) is True
    assert await cache.first_use(CLIENT, "short-lived", expires_at) is False
    await asyncio.sleep(max(expires_at - time.time(), 0.0) + 0.25)
    assert await cache.first_use(CLIENT, "short-lived", alive()) is True  # expired: a new use
    assert await cache.first_use(CLIENT, "short-lived", alive()) is False  # which is remembered again


async def test_an_already_expired_assertion_is_still_remembered_briefly(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    expires_at = time.time() - 10
    assert await cache.first_use(CLIENT, "late", expires_at) is True
    assert await cache.first_use(CLIENT, "late", expires_at) is False  # kept for MIN_RETENTION_S
    assert MIN_RETENTION_S >= 1.0


@pytest.mark.parametrize("expires_at", [math.nan, math.inf, -math.inf, 10**400], ids=["nan", "inf", "-inf", "huge"])
async def test_a_non_finite_expiry_is_refused(replay: Backend[ReplayCache], expires_at: float) -> None:
    cache = await replay.new()
    with pytest.raises(ValueError, match="finite"):
        await cache.first_use(CLIENT, "jti", expires_at)


async def test_200_concurrent_uses_have_exactly_one_winner(replay: Backend[ReplayCache]) -> None:
    cache = await replay.new()
    expires_at = alive()
    results = await asyncio.gather(*(cache.first_use(CLIENT, "raced", expires_at) for _ in range(200)))
    assert len(results) == 200
    assert results.count(True) == 1


async def test_two_instances_on_one_store_share_one_memory(replay: Backend[ReplayCache]) -> None:
    """Two processes on one SQLite file, or two connections (replicas) to one Redis."""
    first, second = await replay.new(), await replay.new()
    assert await first.first_use(CLIENT, "seen-by-first", alive()) is True
    assert await second.first_use(CLIENT, "seen-by-first", alive()) is False
    expires_at = alive()
    results = await asyncio.gather(
        *((first if i % 2 else second).first_use(CLIENT, "raced-across", expires_at) for i in range(200))
    )
    assert results.count(True) == 1


async def test_memory_survives_a_restart(replay: Backend[ReplayCache]) -> None:
    before = await replay.new()
    assert await before.first_use(CLIENT, "before-restart", alive()) is True
    await before.close()
    after = await replay.new()
    assert await after.first_use(CLIENT, "before-restart", alive()) is False


WORKER = """
import asyncio, json, sys, time
from pathlib import Path
import structlog
from gateway.trust.replay import RedisReplayCache, SqliteReplayCache

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the answer
kind, where, prefix, start_at, count = sys.argv[1:6]

async def main():
    cache = SqliteReplayCache(Path(where)) if kind == "sqlite" else RedisReplayCache(where, prefix)
    await cache.open()
    try:
        await asyncio.sleep(max(float(start_at) - time.time(), 0))
        jtis = [f"jti-{i}" for i in range(int(count))]
        won = await asyncio.gather(*(cache.first_use("anss.asd", jti, time.time() + 60) for jti in jtis))
    finally:
        await cache.close()
    print(json.dumps([jti for jti, ok in zip(jtis, won) if ok]))

asyncio.run(main())
"""


async def test_separate_processes_on_one_store_agree(replay: Backend[ReplayCache]) -> None:
    """Four real processes race on the same 50 jtis: each jti has exactly one winner overall."""
    processes, count = 4, 50
    start_at = time.time() + 2.0  # every worker is up by then, so they really race
    kind, where, prefix = replay.spec
    argv = [sys.executable, "-c", WORKER, kind, where, prefix, str(start_at), str(count)]
    pipe = asyncio.subprocess.PIPE
    workers = [await asyncio.create_subprocess_exec(*argv, stdout=pipe, stderr=pipe) for _ in range(processes)]
    outputs = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in workers)), timeout=60)
    assert [w.returncode for w in workers] == [0] * processes, [err.decode() for _, err in outputs]
    winners = [jti for out, _ in outputs for jti in json.loads(out)]
    assert sorted(winners) == sorted(f"jti-{i}" for i in range(count))


# Implementation details each store promises on top of the contract.


async def test_sqlite_purges_expired_rows_as_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite3"
    cache = SqliteReplayCache(path)
    await cache.open()
    try:
        expires_at = alive(1.0)
        await asyncio.gather(*(cache.first_use(CLIENT, f"old-{i}", expires_at) for i in range(100)))
        await asyncio.sleep(max(expires_at - time.time(), 0.0) + 0.25)
        for i in range(3):  # each call deletes a bounded number of expired rows (at least 64)
            assert await cache.first_use(CLIENT, f"new-{i}", alive()) is True
    finally:
        await cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        query = "SELECT CAST(client AS TEXT), length(jti), expires_at > ? FROM replay_cache"
        rows = conn.execute(query, (time.time(),)).fetchall()
    assert rows == [(CLIENT, 32, 1)] * 3  # only the live rows remain, and only digests of jtis are stored


async def test_redis_keys_are_fixed_size_digests_that_expire(redis_namespace: RedisNamespace) -> None:
    prefix = redis_namespace.prefix + "jti:"
    cache = RedisReplayCache(redis_namespace.url, prefix=prefix)
    await cache.open()
    try:
        assert await cache.first_use(CLIENT, "x" * 10_000, alive(30)) is True
    finally:
        await cache.close()
    epoch_key = (prefix + "epoch").encode()
    (key,) = [k for k in await redis_namespace.keys() if k != epoch_key]
    assert key.startswith(prefix.encode()) and len(key) == len(prefix) + 64
    assert 29_000 < await redis_namespace.client.pttl(key) <= 30_000
