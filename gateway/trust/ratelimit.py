"""Per-client rate limiting: owns "may this client make one more request now?" and the headers that say so.

A token bucket per client: it holds at most ``burst`` tokens, refills at ``rate_per_s`` tokens per second,
and each request takes one token. A request arriving to an empty bucket (fewer than one token) is refused
with the time until one token is back. A bucket left alone until it is full again is the same as no bucket,
so both implementations forget idle buckets without changing any decision.

- ``LocalRateLimiter``: in the process, on the monotonic clock. Each process (replica) has its own
  budget: N replicas allow N × the limit. Memory stays bounded by ``max_buckets``, and the limiter never
  forgets a bucket that is not full (forgetting it would hand that client a fresh budget: a flood of new keys
  must never reset anyone's count). Buckets full again are dropped a few at a time, and at once when room is
  needed; when every one of ``max_buckets`` buckets is still counting, a *new* key is refused (fail closed
  for that key, logged ``rate_limiter_full``) until one is full again.
- ``RedisRateLimiter``: one budget shared by every replica. The whole read-refill-take-write runs as one
  Lua script (EVALSHA, loading the script again if the server lost it), so it is atomic; it reads the
  Redis server's ``TIME``, never a replica's clock, so replicas agree; each key expires when its bucket
  would be full again.

The decision arithmetic (``Decision``: remaining, reset, retry-after) is written once, in Python, for both.
``headers`` renders a decision as ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset``
(IETF "RateLimit header fields" draft: integer seconds; here, until the bucket is full again) and, on a
refusal, ``Retry-After`` (integer seconds, at least 1).

Errors are raised, not swallowed: whether a limiter that cannot answer lets requests through is the
caller's policy.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from gateway.stores.redis import redis_client

__all__ = ["Decision", "Limit", "LocalRateLimiter", "RateLimiter", "RedisRateLimiter", "headers"]
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Limit:
    """A token bucket: ``burst`` requests at once, refilled at ``rate_per_s`` requests per second."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"rate_per_s must be a positive number, not {self.rate_per_s!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an integer ≥ 1, not {self.burst!r}")


@dataclass(frozen=True)
class Decision:
    """One request's verdict. Times are seconds; ``retry_after_s`` is 0 when allowed."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float


@runtime_checkable
class RateLimiter(Protocol):
    async def take(self, client_id: str, limit: Limit) -> Decision:
        """Take one token from the client's bucket if there is one."""
        ...

    async def close(self) -> None: ...


def _decide(allowed: bool, tokens: float, limit: Limit) -> Decision:
    """The decision once ``tokens`` is the bucket's content after this request (taken or not)."""
    tokens = min(max(tokens, 0.0), float(limit.burst))
    return Decision(
        allowed=allowed,
        limit=limit.burst,
        remaining=math.floor(tokens),
        reset_s=(limit.burst - tokens) / limit.rate_per_s,
        retry_after_s=0.0 if allowed else (1.0 - tokens) / limit.rate_per_s,
    )


def headers(decision: Decision) -> dict[str, str]:
    """The RateLimit header fields (integer seconds), with ``Retry-After`` only when refused."""
    fields = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(max(decision.remaining, 0)),
        "RateLimit-Reset": str(max(math.ceil(decision.reset_s), 0)),
    }
    if not decision.allowed:
        fields["Retry-After"] = str(max(math.ceil(decision.retry_after_s), 1))
    return fields


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # clock reading of the last update
    full_at: float  # when the bucket is full again: from then on, forgetting it changes nothing


class LocalRateLimiter:
    """Token buckets in this process; not shared between processes or replicas (see the module).

    ``_full_at`` is a heap of (when a bucket is full again, its key), so the buckets that may be dropped are
    found without scanning them all. An entry goes stale when its bucket is taken from again (it is then full
    later); stale entries are skipped when they come up, and the heap is rebuilt from the buckets once they
    make up half of it, so it never holds more than ``2 × max_buckets + HEAP_SLACK`` entries."""

    EVICTION_SCAN = 8  # heap entries examined per call for buckets full again: bounded work
    HEAP_SLACK = 64
    FULL_LOG_INTERVAL_S = 60.0  # ``rate_limiter_full`` is logged at most this often (with the count refused)

    def __init__(self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be ≥ 1")
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._full_at: list[tuple[float, str]] = []
        self._refused_new = 0  # new keys refused since ``rate_limiter_full`` was last logged
        self._logged_full_at = -math.inf

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, client_id: str, limit: Limit) -> Decision:
        # No await inside: on one event loop, each take is atomic.
        now = self._clock()
        self._drop_full(now, self.EVICTION_SCAN)
        bucket = self._buckets.get(client_id)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets and not self._drop_full(now, None):
                return self._refuse_new(now, limit)
            tokens = float(limit.burst)
        else:
            tokens = min(float(limit.burst), bucket.tokens + max(now - bucket.at, 0.0) * limit.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        full_at = now + (limit.burst - tokens) / limit.rate_per_s
        self._buckets[client_id] = _Bucket(tokens, now, full_at)
        if bucket is None or full_at != bucket.full_at:  # a refusal leaves the time it is full again unchanged
            heapq.heappush(self._full_at, (full_at, client_id))
            if len(self._full_at) > 2 * len(self._buckets) + self.HEAP_SLACK:
                self._full_at = [(b.full_at, key) for key, b in self._buckets.items()]
                heapq.heapify(self._full_at)
        return _decide(allowed, tokens, limit)

    def _drop_full(self, now: float, scan: int | None) -> bool:
        """Forget buckets that are full again (the same as no bucket), examining at most ``scan`` heap entries
        (``None``: until one is dropped); whether one was."""
        dropped = False
        while self._full_at and self._full_at[0][0] <= now and (scan is None or scan > 0):
            _, key = heapq.heappop(self._full_at)
            bucket = self._buckets.get(key)
            if bucket is not None and bucket.full_at <= now:
                del self._buckets[key]
                dropped = True
                if scan is None:
                    break
            if scan is not None:
                scan -= 1
        return dropped

    def _refuse_new(self, now: float, limit: Limit) -> Decision:
        """Every bucket is still counting: refuse this new key rather than forget anyone's count."""
        self._refused_new += 1
        if now - self._logged_full_at >= self.FULL_LOG_INTERVAL_S:
            log.warning("rate_limiter_full", max_buckets=self.max_buckets, new_keys_refused=self._refused_new)
            self._logged_full_at, self._refused_new = now, 0
        wait = max(self._full_at[0][0] - now, 1.0 / limit.rate_per_s) if self._full_at else 1.0 / limit.rate_per_s
        return Decision(allowed=False, limit=limit.burst, remaining=0, reset_s=wait, retry_after_s=wait)

    async def close(self) -> None:
        self._buckets.clear()
        self._full_at.clear()


# KEYS[1] = the bucket; ARGV = rate per second, burst. Returns {allowed (0/1), tokens left (string)}.
# Numbers go back as strings: Redis would truncate a Lua number to an integer.
TOKEN_BUCKET = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
    tokens = burst
else
    local elapsed = now - at
    if elapsed < 0 then elapsed = 0 end
    tokens = math.min(burst, tokens + elapsed * rate)
end
local allowed = 0
if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) / rate * 1000)))
return {allowed, string.format('%.17g', tokens)}
"""


class RedisRateLimiter:
    """Token buckets in Redis, one budget shared by every replica (see the module)."""

    def __init__(
        self, url: str, prefix: str = "anss:rl:", *, timeout_s: float = 2.0, max_connections: int = 64
    ) -> None:
        self.prefix = prefix
        self._redis = redis_client(url, timeout_s, max_connections)
        self._script = self._redis.register_script(TOKEN_BUCKET)  # EVALSHA; on NOSCRIPT, loads it and retries

    def key(self, client_id: str) -> str:
        return self.prefix + hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).hexdigest()

    async def take(self, client_id: str, limit: Limit) -> Decision:
        reply = await self._script(keys=[self.key(client_id)], args=[repr(float(limit.rate_per_s)), limit.burst])
        allowed, tokens = reply
        return _decide(int(allowed) == 1, float(tokens), limit)

    async def close(self) -> None:
        await self._redis.aclose()
