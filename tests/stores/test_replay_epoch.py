"""The Redis replay cache across a reset: the epoch key makes a used assertion stay refused after Redis forgot it.

A reset is simulated two ways: deleting this test's own keys (its prefix, epoch included) on the shared Redis,
and really restarting a throwaway ``redis-server`` without persistence on a free port (never the shared one).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from gateway.trust.replay import EPOCH_KEY, RedisReplayCache, ReplayHistoryLost, SqliteReplayCache
from tests.stores.conftest import RedisNamespace, captured

CLIENT = "anss.asd"
LEEWAY = 30.0


@asynccontextmanager
async def cache_on(url: str, prefix: str) -> AsyncIterator[RedisReplayCache]:
    cache = RedisReplayCache(url, prefix=prefix, leeway_s=LEEWAY)
    await cache.open()
    try:
        yield cache
    finally:
        await cache.close()


async def use(cache: RedisReplayCache, jti: str, issued_at: float) -> bool:
    return await cache.first_use(CLIENT, jti, issued_at + 300 + LEEWAY, issued_at)


async def seed_epoch(namespace: RedisNamespace, prefix: str, age_s: float) -> float:
    """A Redis whose key set has existed for ``age_s`` seconds (as after a long uptime)."""
    epoch = math.floor(time.time() - age_s) + 0.25  # a known fraction of a second (see the bound test)
    await namespace.client.set(prefix + EPOCH_KEY, repr(epoch))
    return epoch




async def test_the_first_use_creates_an_epoch_that_never_expires(redis_namespace: RedisNamespace) -> None:
    prefix = redis_namespace.prefix + "jti:"
    before = time.time()
    async with cache_on(redis_namespace.url, prefix) as cache:
        with pytest.raises(ReplayHistoryLost) as refused:  # an empty Redis: nothing proves what was used before
            await use(cache, "jti-now", time.time())
    raw = await redis_namespace.client.get(prefix + EPOCH_KEY)
    assert raw is not None and before <= float(raw) <= time.time()
    assert refused.value.epoch == float(raw) and refused.value.accept_from == float(raw) + LEEWAY
    assert await redis_namespace.client.pttl(prefix + EPOCH_KEY) == -1, "the epoch key has no expiry"


async def test_an_assertion_signed_leeway_after_the_epoch_is_decided_by_its_key(
        redis_namespace: RedisNamespace) -> None:
    prefix = redis_namespace.prefix + "jti:"
    epoch = await seed_epoch(redis_namespace, prefix, 10)
    async with cache_on(redis_namespace.url, prefix) as cache:
        with pytest.raises(ReplayHistoryLost):
            await use(cache, "just-before", epoch + LEEWAY - 0.001)
        with pytest.raises(ReplayHistoryLost):  # after E + leeway, but int(iat) is what the assertion check compared
            await use(cache, "a-fraction-after", epoch + LEEWAY + 0.5)
        bound = math.ceil(epoch + LEEWAY)
        assert await use(cache, "at-the-bound", bound) is True
        assert await use(cache, "at-the-bound", bound) is False, "a replay, as always"


async def test_a_used_assertion_stays_refused_after_redis_lost_its_keys(redis_namespace: RedisNamespace) -> None:
    prefix = redis_namespace.prefix + "jti:"
    await seed_epoch(redis_namespace, prefix, 3600)
    issued = time.time() - 5
    async with cache_on(redis_namespace.url, prefix) as cache:
        assert await use(cache, "used-once", issued) is True
        assert await use(cache, "used-once", issued) is False
        lost = await redis_namespace.keys()
        assert len(lost) == 2  # the jti key and the epoch key
        await redis_namespace.client.delete(*lost)  # a reset: every key gone, the epoch key included
        with captured() as logs:
            with pytest.raises(ReplayHistoryLost) as refused:
                await use(cache, "used-once", issued)
            with pytest.raises(ReplayHistoryLost):  # and again: the first refusal did not launder it
                await use(cache, "used-once", issued)
    assert refused.value.epoch > issued and refused.value.accept_from == refused.value.epoch + LEEWAY
    changes = [e for e in logs if e["event"] == "replay_epoch_changed"]
    assert len(changes) == 1 and changes[0]["epoch"] == refused.value.epoch
    assert changes[0]["log_level"] == "warning"


async def test_another_replica_sees_the_reset_too(redis_namespace: RedisNamespace) -> None:
    prefix = redis_namespace.prefix + "jti:"
    await seed_epoch(redis_namespace, prefix, 3600)
    issued = time.time() - 5
    async with cache_on(redis_namespace.url, prefix) as first, cache_on(redis_namespace.url, prefix) as second:
        assert await use(first, "seen-by-first", issued) is True
        await redis_namespace.client.delete(*await redis_namespace.keys())
        with pytest.raises(ReplayHistoryLost):
            await use(first, "anything-old", issued)  # the first replica recreates the epoch
        with pytest.raises(ReplayHistoryLost):
            await use(second, "seen-by-first", issued)  # the second one reads it


async def test_an_unreadable_epoch_fails_closed(redis_namespace: RedisNamespace) -> None:
    prefix = redis_namespace.prefix + "jti:"
    await redis_namespace.client.set(prefix + EPOCH_KEY, b"not a time")
    async with cache_on(redis_namespace.url, prefix) as cache:
        with pytest.raises(ValueError, match="epoch"):
            await use(cache, "jti", time.time() - 3600)
    await redis_namespace.client.set(prefix + EPOCH_KEY, b"nan")
    async with cache_on(redis_namespace.url, prefix) as cache:
        with pytest.raises(ValueError, match="epoch"):
            await use(cache, "jti", time.time() - 3600)


async def test_without_an_issue_time_only_the_key_decides(redis_namespace: RedisNamespace) -> None:
    """``issued_at`` is optional in the protocol; callers that have none keep the plain contract."""
    prefix = redis_namespace.prefix + "jti:"
    async with cache_on(redis_namespace.url, prefix) as cache:
        assert await cache.first_use(CLIENT, "jti", time.time() + 60) is True
        assert await cache.first_use(CLIENT, "jti", time.time() + 60) is False


async def test_the_sqlite_cache_has_no_reset_to_detect(tmp_path: Path) -> None:
    cache = SqliteReplayCache(tmp_path / "replay.sqlite3")
    await cache.open()
    try:
        assert await cache.first_use(CLIENT, "jti", time.time() + 60, time.time() - 200) is True
        assert await cache.first_use(CLIENT, "jti", time.time() + 60, time.time() - 200) is False
    finally:
        await cache.close()


# A real restart of a Redis without persistence: our own server on a free port, killed and started again.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def throwaway_redis(port: int, workdir: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: the restart case needs its own server")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


async def wait_until_up(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        for _ in range(100):
            try:
                if await client.ping():
                    return
            except OSError:
                pass
            except Exception:  # redis' ConnectionError while it starts
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("the throwaway redis-server did not start")
    finally:
        await client.aclose()


async def test_a_used_assertion_stays_refused_across_a_real_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    issued = time.time() - 5
    with throwaway_redis(port, tmp_path):
        await wait_until_up(url)
        from redis.asyncio import Redis

        seeder = Redis.from_url(url)
        await seeder.set("anss:jti:" + EPOCH_KEY, repr(time.time() - 3600))  # up for an hour already
        await seeder.aclose()
        async with cache_on(url, "anss:jti:") as cache:
            assert await use(cache, "before-restart", issued) is True
    with throwaway_redis(port, tmp_path):  # the same port, nothing kept
        await wait_until_up(url)
        async with cache_on(url, "anss:jti:") as cache:
            with pytest.raises(ReplayHistoryLost):
                await use(cache, "before-restart", issued)


def test_the_redis_prefix_is_configured(tmp_path: Path) -> None:
    from gateway.config.settings import load
    from tests.config_support import config_with

    config = config_with(tmp_path, 'redis_prefix = "anss:jti:"', 'redis_prefix = "ministry-a:jti:"', "gateway.toml")
    assert load(config, env={}).replay_redis_prefix == "ministry-a:jti:"
    assert load(env={}).replay_redis_prefix == "anss:jti:"


async def test_a_new_server_that_kept_the_epoch_but_lost_the_key_is_caught(tmp_path: Path) -> None:
    """The case the epoch key alone misses: after a crash under ``appendfsync everysec`` (the last second lost)
    or a failover to a lagging replica, the epoch is there but the used key is not. The running cache sees
    another server process (``run_id``) on its next connection and starts a new epoch itself."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    issued = time.time() - 5
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    old_epoch = repr(time.time() - 3600)
    with throwaway_redis(port, tmp_path / "first"):
        await wait_until_up(url)
        seeder = Redis.from_url(url)
        await seeder.set("anss:jti:" + EPOCH_KEY, old_epoch)
        await seeder.aclose()
        cache = RedisReplayCache(url, prefix="anss:jti:", leeway_s=LEEWAY)
        await cache.open()
        assert await use(cache, "used-before-the-crash", issued) is True
        first_server = cache.known_server
    try:
        with throwaway_redis(port, tmp_path / "second"):
            await wait_until_up(url)
            seeder = Redis.from_url(url)
            await seeder.set("anss:jti:" + EPOCH_KEY, old_epoch)  # the epoch survived, the used key did not
            await seeder.aclose()
            with captured() as logs:
                for _ in range(3):  # the pool notices the broken connection on its first use and reconnects
                    try:
                        with pytest.raises(ReplayHistoryLost):
                            await use(cache, "used-before-the-crash", issued)
                        break
                    except (OSError, RedisError):  # the old connection breaks once
                        continue
            assert cache.known_server not in (None, first_server)
            assert [e["event"] for e in logs if e["event"] == "replay_cache_server_changed"] == [
                "replay_cache_server_changed"]
    finally:
        await cache.close()


async def test_a_server_without_info_still_works_on_the_epoch_alone(tmp_path: Path) -> None:
    """Managed servers often disable INFO (and CONFIG): the connection must still work, fail closed nowhere."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with throwaway_redis(port, tmp_path, "--rename-command", "INFO", "", "--rename-command", "CONFIG", ""):
        await wait_until_up(url)
        async with cache_on(url, "anss:jti:") as cache:
            with pytest.raises(ReplayHistoryLost):  # a fresh server: the epoch starts now
                await use(cache, "jti", time.time())
            assert cache.known_server is None
            later = math.ceil(time.time() + LEEWAY) + 1  # signed once the window after the epoch is over
            assert await use(cache, "jti-later", later) is True
            assert await use(cache, "jti-later", later) is False
