"""The rate-limiter contract, run against every implementation (see conftest.py), and the header fields."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.trust import ratelimit
from gateway.trust.ratelimit import Decision, Limit, LocalRateLimiter, RateLimiter, RedisRateLimiter, headers
from tests.stores.conftest import Backend, RedisNamespace

CLIENT = "anss.asd"
SLOW = 0.01  # tokens per second: refill during a test is negligible, and accounted for anyway


def refill_allowance(limit: Limit, since: float) -> int:
    """Tokens that may have come back since ``since`` (monotonic): the tolerance of a count."""
    return math.ceil((time.monotonic() - since) * limit.rate_per_s)


async def test_is_a_rate_limiter(limiter: Backend[RateLimiter]) -> None:
    assert isinstance(await limiter.new(), RateLimiter)


async def test_a_burst_is_allowed_then_refused(limiter: Backend[RateLimiter]) -> None:
    rl, limit = await limiter.new(), Limit(rate_per_s=1.0, burst=5)
    allowed = [await rl.take(CLIENT, limit) for _ in range(5)]
    assert [d.allowed for d in allowed] == [True] * 5
    assert [d.remaining for d in allowed] == [4, 3, 2, 1, 0]
    assert {d.limit for d in allowed} == {5}
    assert all(d.retry_after_s == 0 for d in allowed)
    refused = await rl.take(CLIENT, limit)
    assert not refused.allowed
    assert refused.remaining == 0 and refused.limit == 5
    assert 0 < refused.retry_after_s <= 1 / limit.rate_per_s
    assert refused.retry_after_s <= refused.reset_s <= limit.burst / limit.rate_per_s


async def test_the_bucket_refills_after_waiting(limiter: Backend[RateLimiter]) -> None:
    rl, limit = await limiter.new(), Limit(rate_per_s=2.0, burst=2)
    assert [(await rl.take(CLIENT, limit)).allowed for _ in range(2)] == [True, True]
    refused = await rl.take(CLIENT, limit)
    assert not refused.allowed
    await asyncio.sleep(refused.retry_after_s + 0.1)
    again = await rl.take(CLIENT, limit)
    assert again.allowed
    assert (await rl.take(CLIENT, limit)).allowed is False  # one token came back, not the whole burst


async def test_clients_have_separate_buckets(limiter: Backend[RateLimiter]) -> None:
    rl, limit = await limiter.new(), Limit(rate_per_s=SLOW, burst=1)
    assert (await rl.take("anss.asd", limit)).allowed
    assert not (await rl.take("anss.asd", limit)).allowed
    assert (await rl.take("ministry.education", limit)).allowed


async def test_concurrent_takes_never_exceed_the_burst(limiter: Backend[RateLimiter]) -> None:
    rl, limit = await limiter.new(), Limit(rate_per_s=SLOW, burst=10)
    since = time.monotonic()
    decisions = await asyncio.gather(*(rl.take(CLIENT, limit) for _ in range(100)))
    granted = sum(d.allowed for d in decisions)
    assert limit.burst <= granted <= limit.burst + refill_allowance(limit, since)
    assert sorted(d.remaining for d in decisions if d.allowed)[: limit.burst] == list(range(limit.burst))


async def test_replicas_share_one_budget_only_in_redis(limiter: Backend[RateLimiter]) -> None:
    """Two replicas: on Redis they share one budget; LocalRateLimiter gives each process its own budget,
    so N replicas allow N × the limit. This difference is by design: use Redis when replicas must agree."""
    first, second = await limiter.new(), await limiter.new()
    limit = Limit(rate_per_s=SLOW, burst=10)
    since = time.monotonic()
    decisions = await asyncio.gather(*((first if i % 2 else second).take(CLIENT, limit) for i in range(60)))
    granted = sum(d.allowed for d in decisions)
    budgets = 1 if limiter.shared else 2
    assert budgets * limit.burst <= granted <= budgets * (limit.burst + refill_allowance(limit, since))


async def test_header_fields_are_integers_and_retry_after_only_when_refused(limiter: Backend[RateLimiter]) -> None:
    rl, limit = await limiter.new(), Limit(rate_per_s=0.5, burst=2)
    allowed = headers(await rl.take(CLIENT, limit))
    assert set(allowed) == {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
    assert all(value.isdigit() for value in allowed.values())
    assert allowed["RateLimit-Limit"] == "2" and allowed["RateLimit-Remaining"] == "1"
    await rl.take(CLIENT, limit)
    refused = headers(await rl.take(CLIENT, limit))
    assert set(refused) == {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"}
    assert all(value.isdigit() for value in refused.values())
    assert refused["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused["Retry-After"]) <= 2  # one token at 0.5 per second
    assert int(refused["Retry-After"]) <= int(refused["RateLimit-Reset"]) <= 4


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (
            Decision(True, 10, 9, 0.1, 0.0),
            {"RateLimit-Limit": "10", "RateLimit-Remaining": "9", "RateLimit-Reset": "1"},
        ),
        (
            Decision(True, 10, 0, 0.0, 0.0),
            {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "0"},
        ),
        (
            Decision(False, 10, 0, 2.3, 0.2),
            {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "3", "Retry-After": "1"},
        ),
        (
            Decision(False, 10, 0, 9.5, 1.5),
            {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "10", "Retry-After": "2"},
        ),
        (
            Decision(False, 10, 0, 0.0, 0.0),  # never "Retry-After: 0" on a refusal
            {"RateLimit-Limit": "10", "RateLimit-Remaining": "0", "RateLimit-Reset": "0", "Retry-After": "1"},
        ),
    ],
)
def test_header_fields_round_seconds_up(decision: Decision, expected: dict[str, str]) -> None:
    assert headers(decision) == expected


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (1, 0), (1, 1.5), (1, True)]
)
def test_a_limit_must_be_positive(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        Limit(rate_per_s=rate, burst=burst)


# Implementation details each limiter promises on top of the contract.


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_local_forgets_idle_buckets_without_changing_decisions() -> None:
    clock = FakeClock()
    rl, limit = LocalRateLimiter(clock=clock), Limit(rate_per_s=1.0, burst=3)
    await rl.take("idle", limit)
    assert len(rl) == 1
    clock.now += 0.5  # "idle" is not full again yet: kept
    await rl.take("busy", limit)
    assert len(rl) == 2
    clock.now += 1.0  # now "idle" is full again, equal to no bucket at all: forgotten
    await rl.take("busy", limit)
    assert len(rl) == 1
    assert (await rl.take("idle", limit)).remaining == 2  # a full bucket, as if it had been kept


async def test_local_memory_is_bounded() -> None:
    rl, limit = LocalRateLimiter(max_buckets=50), Limit(rate_per_s=SLOW, burst=1)
    for i in range(1_000):
        await rl.take(f"client-{i}", limit)
    assert len(rl) == 50


async def test_local_never_forgets_a_bucket_that_is_not_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of new keys (e.g. fake ids) must not hand anyone a fresh budget: once every bucket is still
    counting, new keys are refused (fail closed for them, logged) and the counted ones are kept as they are."""
    clock = FakeClock()
    rl, limit = LocalRateLimiter(max_buckets=20, clock=clock), Limit(rate_per_s=1 / 180, burst=5)
    assert [(await rl.take("officer", limit)).allowed for _ in range(5)] == [True] * 5
    configured = structlog.is_configured()
    with capture_logs() as logs:
        # a fresh logger: the module's may be bound already (cache_logger_on_first_use) and escape the capture
        monkeypatch.setattr(ratelimit, "log", structlog.get_logger(ratelimit.__name__))
        flood = [await rl.take(f"fake-{i}", limit) for i in range(1_000)]
    if not configured:  # capture_logs leaves structlog "configured", and a gateway started later would then
        structlog.reset_defaults()  # skip its own logging set-up and print to stdout
    assert [d.allowed for d in flood] == [True] * 19 + [False] * 981 and len(rl) == 20
    assert all(d.retry_after_s > 0 and headers(d)["Retry-After"] for d in flood[19:])
    assert [e for e in logs if e["event"] == "rate_limiter_full"] == [
        {"event": "rate_limiter_full", "log_level": "warning", "max_buckets": 20, "new_keys_refused": 1}]
    assert not (await rl.take("officer", limit)).allowed  # still throttled: its count was not reset
    assert not (await rl.take("fake-999", limit)).allowed  # still no room for a new key


async def test_local_makes_room_only_from_buckets_full_again() -> None:
    clock = FakeClock()
    rl = LocalRateLimiter(max_buckets=3, clock=clock)
    slow, fast = Limit(rate_per_s=0.01, burst=2), Limit(rate_per_s=1.0, burst=2)
    await rl.take("slow", slow)
    await rl.take("slow", slow)
    await rl.take("fast-1", fast)
    await rl.take("fast-2", fast)
    assert not (await rl.take("new", fast)).allowed  # full, and every bucket still counting
    clock.now += 1.5  # the fast buckets are full again (as good as fresh); "slow" has 0.015 of its 2 tokens
    assert (await rl.take("new", fast)).allowed and len(rl) <= 3
    assert "slow" in rl._buckets and not (await rl.take("slow", slow)).allowed


async def test_local_bookkeeping_stays_bounded() -> None:
    clock = FakeClock()
    rl, limit = LocalRateLimiter(max_buckets=10, clock=clock), Limit(rate_per_s=1_000.0, burst=10_000)
    for i in range(20_000):  # the same few keys, each take pushing when they are full again further out
        await rl.take(f"client-{i % 5}", limit)
        clock.now += 0.0001
    assert len(rl) == 5 and len(rl._full_at) <= 2 * rl.max_buckets + rl.HEAP_SLACK


async def test_redis_bucket_keys_are_digests_that_expire_when_full(redis_namespace: RedisNamespace) -> None:
    prefix = redis_namespace.prefix + "rl:"
    rl = RedisRateLimiter(redis_namespace.url, prefix=prefix)
    try:
        await rl.take("x" * 10_000, Limit(rate_per_s=10.0, burst=5))  # full again 0.1 s later
        (key,) = await redis_namespace.keys()
        assert key.startswith(prefix.encode()) and len(key) == len(prefix) + 64
        assert 0 < await redis_namespace.client.pttl(key) <= 100
        await asyncio.sleep(0.3)
        assert await redis_namespace.keys() == []
    finally:
        await rl.close()


async def test_redis_survives_a_flushed_script_cache(redis_namespace: RedisNamespace) -> None:
    rl, limit = RedisRateLimiter(redis_namespace.url, prefix=redis_namespace.prefix + "rl:"), Limit(SLOW, 2)
    try:
        assert (await rl.take(CLIENT, limit)).allowed
        await redis_namespace.client.script_flush()  # e.g. a restarted or failed-over server: EVALSHA misses
        assert (await rl.take(CLIENT, limit)).allowed
        assert not (await rl.take(CLIENT, limit)).allowed
    finally:
        await rl.close()
