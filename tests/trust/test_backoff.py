"""The sign-in throttle: free attempts, then a doubling wait; nobody else's failures make a bucket wait; the
in-process one is bounded and never locks anyone out when full. In-process on a fake clock, and on real Redis."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.trust import backoff
from gateway.trust.backoff import Backoff, Bucket, LocalSignInThrottle, RedisSignInThrottle, SignInThrottle, delay_s
from tests.stores.conftest import RedisNamespace, redis_namespace_for_test

RULE = Backoff(free=3, base_delay_s=2.0, max_delay_s=60.0, forget_after_s=600.0)
ADDRESS_RULE = Backoff(free=10, base_delay_s=2.0, max_delay_s=60.0, forget_after_s=600.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def buckets(officer: str, address: str) -> list[Bucket]:
    return [Bucket(f"{officer}@{address}", RULE, reset_on_success=True), Bucket(address, ADDRESS_RULE)]


def test_the_wait_doubles_from_the_free_attempts_up_to_the_cap() -> None:
    assert [delay_s(n, RULE) for n in range(1, 10)] == [0, 0, 2, 4, 8, 16, 32, 60, 60]
    assert delay_s(10**9, RULE) == 60.0  # no overflow however many attempts
    with pytest.raises(ValueError):
        Backoff(free=0, base_delay_s=1, max_delay_s=2, forget_after_s=1)
    with pytest.raises(ValueError):
        Backoff(free=1, base_delay_s=5, max_delay_s=2, forget_after_s=1)
    with pytest.raises(ValueError):
        Backoff(free=1, base_delay_s=math.nan, max_delay_s=2, forget_after_s=1)


async def test_local_free_attempts_then_a_growing_wait_never_a_lockout() -> None:
    clock = FakeClock()
    throttle = LocalSignInThrottle(clock=clock)
    mine = buckets("officer", "10.0.0.1")
    assert [await throttle.attempt(mine) for _ in range(3)] == [0.0, 0.0, 0.0]
    waits = []
    for _ in range(5):  # each time: refused while waiting (not counted), then allowed once the wait is over
        wait = await throttle.attempt(mine)
        assert wait > 0 and await throttle.attempt(mine) == wait, "a refused attempt is not counted"
        waits.append(wait)
        clock.now += wait
        assert await throttle.attempt(mine) == 0.0
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert throttle.count("officer@10.0.0.1") == 8


async def test_local_failures_elsewhere_never_make_the_officer_wait() -> None:
    clock = FakeClock()
    throttle = LocalSignInThrottle(clock=clock)
    attacker = buckets("officer", "203.0.113.9")
    guesses = 0
    while clock.now < 1000.0 + 3600:  # an hour of guessing, as fast as the throttle allows
        wait = await throttle.attempt(attacker)
        if wait:
            clock.now += wait
        else:
            guesses += 1
    assert guesses < 3 + 10 + 60, f"{guesses} guesses in an hour: the delays slow guessing"
    assert await throttle.attempt(buckets("officer", "10.0.0.1")) == 0.0, "the officer's own address goes on"


async def test_local_a_right_password_forgets_the_officer_count_and_gives_the_attempt_back() -> None:
    clock = FakeClock()
    throttle = LocalSignInThrottle(clock=clock)
    mine = buckets("officer", "10.0.0.1")
    for _ in range(3):
        assert await throttle.attempt(mine) == 0.0
    await throttle.succeeded(mine)
    assert throttle.count("officer@10.0.0.1") == 0 and throttle.count("10.0.0.1") == 2
    assert await throttle.attempt(mine) == 0.0


async def test_local_made_up_ids_from_one_address_wait_on_the_address() -> None:
    clock = FakeClock()
    throttle = LocalSignInThrottle(clock=clock)
    results = [await throttle.attempt(buckets(f"fake-{i}", "198.51.100.7")) for i in range(12)]
    assert results[:10] == [0.0] * 10 and all(w > 0 for w in results[10:])
    assert await throttle.attempt(buckets("officer", "10.0.0.1")) == 0.0


async def test_local_counts_are_forgotten_after_the_window() -> None:
    clock = FakeClock()
    throttle = LocalSignInThrottle(clock=clock)
    mine = buckets("officer", "10.0.0.1")
    for _ in range(3):
        await throttle.attempt(mine)
    clock.now += RULE.base_delay_s + RULE.forget_after_s
    assert await throttle.attempt(mine) == 0.0 and throttle.count("officer@10.0.0.1") == 1


async def test_local_full_forgets_the_least_recent_and_still_lets_the_officer_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The global cap bounds memory; when a flood of addresses fills it, the oldest counts go (which can only
    shorten someone's wait), so the officer is never refused for want of room."""
    clock = FakeClock()
    throttle = LocalSignInThrottle(max_buckets=10, clock=clock)
    configured = structlog.is_configured()
    with capture_logs() as logs:
        monkeypatch.setattr(backoff, "log", structlog.get_logger(backoff.__name__))
        for i in range(1_000):
            await throttle.attempt(buckets("officer", f"203.0.113.{i % 250}.{i}"))
            assert len(throttle) <= 10
    if not configured:
        structlog.reset_defaults()
    assert [e["event"] for e in logs] == ["sign_in_throttle_full"], "logged at most once a minute"
    assert await throttle.attempt(buckets("officer", "10.0.0.1")) == 0.0
    assert len(throttle) == 10
    with pytest.raises(ValueError):
        LocalSignInThrottle(max_buckets=1)


# --- the same on Redis (shared by replicas) ---------------------------------------------------------------------------


@pytest.fixture
async def redis_throttle() -> AsyncIterator[tuple[RedisSignInThrottle, RedisNamespace]]:
    async with redis_namespace_for_test() as namespace:
        throttle = RedisSignInThrottle(namespace.url, prefix=namespace.prefix + "signin:")
        try:
            yield throttle, namespace
        finally:
            await throttle.close()


async def until_allowed(throttle: SignInThrottle, mine: list[Bucket]) -> int:
    """Attempt until one is counted; how many were refused meanwhile."""
    refused = 0
    while (wait := await throttle.attempt(mine)) > 0:
        refused += 1
        await asyncio.sleep(wait)
    return refused


async def test_redis_free_attempts_then_a_wait_that_grows(redis_throttle: tuple[RedisSignInThrottle,
                                                                                 RedisNamespace]) -> None:
    throttle, namespace = redis_throttle
    rule = Backoff(free=2, base_delay_s=0.2, max_delay_s=5.0, forget_after_s=60.0)
    mine = [Bucket("officer@10.0.0.1", rule, reset_on_success=True)]
    assert await throttle.attempt(mine) == 0.0
    assert await throttle.attempt(mine) == 0.0  # the second sets the first wait (0.2 s)
    first_until = float(await namespace.client.hget(throttle.key(mine[0].key), "until") or b"nan")
    wait = await throttle.attempt(mine)
    assert 0 < wait <= 0.2
    assert await until_allowed(throttle, mine) >= 0  # counted once the wait is over: it sets 0.4 s
    second_until = float(await namespace.client.hget(throttle.key(mine[0].key), "until") or b"nan")
    assert second_until - first_until >= 0.4 - 1e-6, "the next wait is twice as long, from when it was allowed"
    assert int(await namespace.client.hget(throttle.key(mine[0].key), "n") or 0) == 3
    ttl_ms = await namespace.client.pttl(throttle.key(mine[0].key))
    assert 0 < ttl_ms <= (0.4 + 60.0) * 1000, "the key expires when it would be forgotten"


async def test_redis_another_address_is_not_slowed_and_success_settles(
        redis_throttle: tuple[RedisSignInThrottle, RedisNamespace]) -> None:
    throttle, namespace = redis_throttle
    attacker = buckets("officer", "203.0.113.9")
    for _ in range(3):
        assert await throttle.attempt(attacker) == 0.0
    assert await throttle.attempt(attacker) > 0
    mine = buckets("officer", "10.0.0.1")
    for _ in range(3):
        assert await throttle.attempt(mine) == 0.0
    await throttle.succeeded(mine)
    assert await throttle.attempt(mine) == 0.0, "a right password forgot the officer's count from here"
    assert await namespace.client.hget(throttle.key("10.0.0.1"), "n") == b"3"  # 3 counted, 1 given back, 1 more


async def test_redis_replicas_share_one_count(redis_throttle: tuple[RedisSignInThrottle, RedisNamespace]) -> None:
    throttle, namespace = redis_throttle
    other = RedisSignInThrottle(namespace.url, prefix=throttle.prefix)
    try:
        mine = buckets("officer", "203.0.113.9")
        results = await asyncio.gather(*(t.attempt(mine) for t in [throttle, other] * 10))
    finally:
        await other.close()
    assert sum(1 for w in results if w == 0.0) == 3, "concurrent guesses at two replicas: exactly three counted"
