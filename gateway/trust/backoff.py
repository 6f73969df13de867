"""Sign-in throttling: owns "may this address try a password now, and how long must it wait otherwise?".

A password guess is slowed, never locked out. Each attempt names its *buckets* (for the console: one per
(officer, address) and one per address); each bucket counts attempts, and once a bucket holds ``free``
attempts, each further one makes it wait ``base_delay_s × 2^(n − free)`` seconds, at most ``max_delay_s``,
before the next. An attempt is refused (nothing counted) while any of its buckets waits, with the seconds
left; otherwise it is counted in every bucket *before* the password is checked, so concurrent guesses
cannot slip past the count. A correct password then settles it: a bucket marked ``reset_on_success`` is
forgotten (the officer, from this address, starts afresh), any other gives its attempt back.

Nobody else can make an officer wait: an attacker's failures count in the attacker's own buckets — its
address and (officer, its address) — never in those of the officer's address. What an attacker with many
addresses gains is ``free`` attempts per address and then the delays; see docs/officers.md.

A bucket is forgotten ``forget_after_s`` after its wait ends (or its last attempt): the same as no bucket.

- ``LocalSignInThrottle``: in the process, on the monotonic clock, holding at most ``max_buckets``. When
  it is full, the bucket touched least recently is forgotten (logged ``sign_in_throttle_full``): forgetting
  can only shorten someone's wait, never make anyone wait, so the cap bounds memory without a lockout.
- ``RedisSignInThrottle``: shared by replicas; each decision is one Lua script on the Redis server's
  ``TIME``; each key expires when it would be forgotten.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from gateway.stores.redis import redis_client

__all__ = ["Backoff", "Bucket", "LocalSignInThrottle", "RedisSignInThrottle", "SignInThrottle", "delay_s"]
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Backoff:
    """``free`` attempts at once, then a doubling wait from ``base_delay_s`` up to ``max_delay_s``."""

    free: int
    base_delay_s: float
    max_delay_s: float
    forget_after_s: float

    def __post_init__(self) -> None:
        if isinstance(self.free, bool) or not isinstance(self.free, int) or self.free < 1:
            raise ValueError(f"free must be an integer ≥ 1, not {self.free!r}")
        for name in ("base_delay_s", "max_delay_s", "forget_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if self.max_delay_s < self.base_delay_s:
            raise ValueError("max_delay_s must be at least base_delay_s")


@dataclass(frozen=True)
class Bucket:
    key: str
    rule: Backoff
    reset_on_success: bool = False


def delay_s(count: int, rule: Backoff) -> float:
    """The wait after the ``count``-th attempt of a bucket (0 while within its free attempts)."""
    if count < rule.free:
        return 0.0
    exponent = count - rule.free
    if exponent >= 64:  # 2**64 × any positive base is past any cap
        return rule.max_delay_s
    return min(rule.base_delay_s * 2.0**exponent, rule.max_delay_s)


@runtime_checkable
class SignInThrottle(Protocol):
    async def attempt(self, buckets: Sequence[Bucket]) -> float:
        """0: go ahead, counted in every bucket; otherwise the seconds to wait (nothing counted). Atomic."""
        ...

    async def succeeded(self, buckets: Sequence[Bucket]) -> None:
        """The attempt counted by ``attempt(buckets)`` was right: settle it (see the module)."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _State:
    count: int
    wait_until: float
    forget_at: float


class LocalSignInThrottle:
    """Buckets in this process, at most ``max_buckets`` (see the module)."""

    EXPIRY_SCAN = 8  # least recently touched buckets examined per call for being forgotten: bounded work
    FULL_LOG_INTERVAL_S = 60.0

    def __init__(self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_buckets < 2:
            raise ValueError("max_buckets must be ≥ 2 (an attempt names two buckets)")
        self.max_buckets = max_buckets
        self._clock = clock
        self._states: OrderedDict[str, _State] = OrderedDict()  # least recently touched first
        self._evicted = 0
        self._logged_full_at = -math.inf

    def __len__(self) -> int:
        return len(self._states)

    def count(self, key: str) -> int:
        state = self._states.get(key)
        return 0 if state is None or state.forget_at <= self._clock() else state.count

    async def attempt(self, buckets: Sequence[Bucket]) -> float:
        # No await inside: on one event loop, each decision is atomic.
        now = self._clock()
        self._forget_old(now)
        wait = max((s.wait_until - now for b in buckets if (s := self._live(b.key, now)) is not None), default=0.0)
        if wait > 0:
            return wait
        for bucket in buckets:
            state = self._live(bucket.key, now)
            count = (state.count if state else 0) + 1
            wait_until = now + delay_s(count, bucket.rule)
            self._store(bucket.key, _State(count, wait_until, wait_until + bucket.rule.forget_after_s), now)
        return 0.0

    async def succeeded(self, buckets: Sequence[Bucket]) -> None:
        now = self._clock()
        for bucket in buckets:
            state = self._live(bucket.key, now)
            if state is None:
                continue
            if bucket.reset_on_success or state.count <= 1:
                del self._states[bucket.key]
                continue
            state.count -= 1
            if state.count < bucket.rule.free:
                state.wait_until = now

    def _live(self, key: str, now: float) -> _State | None:
        state = self._states.get(key)
        if state is not None and state.forget_at <= now:
            del self._states[key]
            return None
        return state

    def _store(self, key: str, state: _State, now: float) -> None:
        if key in self._states:
            self._states.move_to_end(key)
        elif len(self._states) >= self.max_buckets:
            self._states.popitem(last=False)  # forgetting only ever shortens a wait
            self._evicted += 1
            if now - self._logged_full_at >= self.FULL_LOG_INTERVAL_S:
                log.warning("sign_in_throttle_full", max_buckets=self.max_buckets, forgotten=self._evicted)
                self._logged_full_at, self._evicted = now, 0
        self._states[key] = state

    def _forget_old(self, now: float) -> None:
        for _ in range(self.EXPIRY_SCAN):
            if not self._states:
                return
            key, state = next(iter(self._states.items()))
            if state.forget_at > now:
                return
            del self._states[key]

    async def close(self) -> None:
        self._states.clear()


# KEYS = the buckets; ARGV = free, base delay, max delay, forget-after (s) for each key in turn.
# Returns {1, "0"} when counted, {0, wait} when refused. Numbers go back as strings (Lua numbers are truncated).
ATTEMPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local wait = 0
for i, key in ipairs(KEYS) do
    local until_ = tonumber(redis.call('HGET', key, 'until') or '0') or 0
    if until_ - now > wait then wait = until_ - now end
end
if wait > 0 then return {0, string.format('%.17g', wait)} end
for i, key in ipairs(KEYS) do
    local free = tonumber(ARGV[4 * i - 3])
    local base = tonumber(ARGV[4 * i - 2])
    local cap = tonumber(ARGV[4 * i - 1])
    local forget = tonumber(ARGV[4 * i])
    local count = redis.call('HINCRBY', key, 'n', 1)
    local delay = 0
    if count >= free then delay = math.min(base * 2 ^ math.min(count - free, 64), cap) end
    redis.call('HSET', key, 'until', string.format('%.17g', now + delay))
    redis.call('PEXPIRE', key, math.max(1, math.ceil((delay + forget) * 1000)))
end
return {1, '0'}
"""

# KEYS = the buckets; ARGV = "reset" or the free attempts of each key. Gives the attempt back or forgets.
SUCCEEDED = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for i, key in ipairs(KEYS) do
    local count = tonumber(redis.call('HGET', key, 'n') or '0') or 0
    if ARGV[i] == 'reset' or count <= 1 then
        redis.call('DEL', key)
    else
        count = redis.call('HINCRBY', key, 'n', -1)
        if count < tonumber(ARGV[i]) then redis.call('HSET', key, 'until', string.format('%.17g', now)) end
    end
end
return 1
"""


class RedisSignInThrottle:
    """The buckets in Redis, shared by every replica (see the module)."""

    def __init__(self, url: str, prefix: str = "anss:signin:", *, timeout_s: float = 2.0,
                 max_connections: int = 16) -> None:
        self.prefix = prefix
        self._redis = redis_client(url, timeout_s, max_connections)
        self._attempt = self._redis.register_script(ATTEMPT)
        self._succeeded = self._redis.register_script(SUCCEEDED)

    def key(self, bucket_key: str) -> str:
        return self.prefix + hashlib.sha256(bucket_key.encode("utf-8", "surrogatepass")).hexdigest()

    async def attempt(self, buckets: Sequence[Bucket]) -> float:
        args: list[str | int] = []
        for b in buckets:
            args += [b.rule.free, repr(b.rule.base_delay_s), repr(b.rule.max_delay_s), repr(b.rule.forget_after_s)]
        counted, wait = await self._attempt(keys=[self.key(b.key) for b in buckets], args=args)
        return 0.0 if int(counted) == 1 else max(float(wait), 0.001)

    async def succeeded(self, buckets: Sequence[Bucket]) -> None:
        await self._succeeded(keys=[self.key(b.key) for b in buckets],
                              args=["reset" if b.reset_on_success else b.rule.free for b in buckets])

    async def close(self) -> None:
        await self._redis.aclose()
