"""Per-client rate limiting: owns "may this client make one more request now?" and the headers that say so.

A token bucket per client: it holds at most ``burst`` tokens, refills at ``rate_per_s`` tokens per second,
and each request takes one token. A request arriving to an empty bucket (fewer than one token) is refused
with the time until one token is back. A bucket left alone until it is full again is the same as no bucket,
so both implementations forget idle buckets without changing any decision.

- ``LocalRateLimiter``: in the process, on the monotonic clock. Each process (replica) has its own
  budget: N replicas allow N × the limit. Memory stays bounded: idle (full again) buckets are evicted a few
  at a time, and past ``max_buckets`` the least recently used goes (that client starts afresh).
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
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Protocol, runtime_checkable

from gateway.redis_pool import redis_client

__all__ = ["Decision", "Limit", "LocalRateLimiter", "RateLimiter", "RedisRateLimiter", "headers"]


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
    """Token buckets in this process; not shared between processes or replicas (see the module)."""

    EVICTION_SCAN = 8  # idle buckets examined per call: bounded work

    def __init__(self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be ≥ 1")
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}  # least recently used first

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, client_id: str, limit: Limit) -> Decision:
        # No await inside: on one event loop, each take is atomic.
        now = self._clock()
        self._evict_idle(now)
        bucket = self._buckets.pop(client_id, None)  # re-inserted below, at the most recent end
        if bucket is None:
            tokens = float(limit.burst)
        else:
            tokens = min(float(limit.burst), bucket.tokens + max(now - bucket.at, 0.0) * limit.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client_id] = _Bucket(tokens, now, now + (limit.burst - tokens) / limit.rate_per_s)
        while len(self._buckets) > self.max_buckets:
            del self._buckets[next(iter(self._buckets))]
        return _decide(allowed, tokens, limit)

    def _evict_idle(self, now: float) -> None:
        idle = [key for key, b in islice(self._buckets.items(), self.EVICTION_SCAN) if b.full_at <= now]
        for key in idle:
            del self._buckets[key]

    async def close(self) -> None:
        self._buckets.clear()


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
