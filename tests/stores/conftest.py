"""Store backends for the contract tests: each implementation on a real server (an SQLite file, Redis).

A contract test takes ``replay`` or ``limiter`` and runs once per backend. ``backend.new()`` opens one more
instance on the *same* store — another process on the same SQLite file, another replica on the same Redis —
and every instance is closed after the test. Redis tests use a fresh key prefix and delete its keys after.

Without Redis on 127.0.0.1:6379 the Redis cases are skipped, except in CI (``CI`` set), where they fail:
CI must never pass by skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Generic, Protocol, TypeVar

import pytest
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from gateway.trust import replay as replay_module
from gateway.trust.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from gateway.trust.replay import RedisReplayCache, ReplayCache, SqliteReplayCache

REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_MISSING = "Redis at 127.0.0.1:6379 is not running: Redis suite skipped"


class Closable(Protocol):
    async def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


@dataclass
class RedisNamespace:
    """A live Redis and a key prefix no other test uses."""

    url: str
    prefix: str
    client: Redis

    async def keys(self) -> list[bytes]:
        return [key async for key in self.client.scan_iter(match=self.prefix + "*")]


@asynccontextmanager
async def redis_namespace_for_test() -> AsyncIterator[RedisNamespace]:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            if "CI" in os.environ:
                pytest.fail(
                    f"Redis at 127.0.0.1:6379 is not reachable ({type(exc).__name__}: {exc}); "
                    "CI is set, and CI must run the Redis suite, not skip it",
                    pytrace=False,
                )
            pytest.skip(REDIS_MISSING)
        namespace = RedisNamespace(REDIS_URL, f"anss-test:{uuid.uuid4().hex}:", client)
        try:
            yield namespace
        finally:
            stale = await namespace.keys()
            if stale:
                await client.delete(*stale)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_namespace() -> AsyncIterator[RedisNamespace]:
    async with redis_namespace_for_test() as namespace:
        yield namespace


@dataclass
class Backend(Generic[T]):
    """One store under test; ``new()`` opens another instance on the same store."""

    name: str
    shared: bool  # do instances share state (like replicas on one Redis), or is each one separate?
    factory: Callable[[], Awaitable[T]]
    spec: tuple[str, str, str] = ("", "", "")  # (kind, file or URL, prefix): enough for another process
    opened: list[T] = field(default_factory=list)

    async def new(self) -> T:
        instance = await self.factory()
        self.opened.append(instance)
        return instance


@pytest.fixture(params=["sqlite", "redis"])
async def replay(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[ReplayCache]]:
    if request.param == "sqlite":
        path = tmp_path / "replay.sqlite3"

        async def sqlite_cache() -> ReplayCache:
            cache = SqliteReplayCache(path)
            await cache.open()
            return cache

        async with _closing(Backend("sqlite", True, sqlite_cache, ("sqlite", str(path), ""))) as backend:
            yield backend
        return
    async with redis_namespace_for_test() as namespace:
        prefix = namespace.prefix + "jti:"

        async def redis_cache() -> ReplayCache:
            cache = RedisReplayCache(namespace.url, prefix=prefix)
            await cache.open()
            return cache

        async with _closing(Backend("redis", True, redis_cache, ("redis", namespace.url, prefix))) as backend:
            yield backend


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Backend[RateLimiter]]:
    if request.param == "local":

        async def local_limiter() -> RateLimiter:
            return LocalRateLimiter()

        async with _closing(Backend("local", False, local_limiter)) as backend:
            yield backend
        return
    async with redis_namespace_for_test() as namespace:

        async def redis_limiter() -> RateLimiter:
            return RedisRateLimiter(namespace.url, prefix=namespace.prefix + "rl:")

        async with _closing(Backend("redis", True, redis_limiter)) as backend:
            yield backend


@asynccontextmanager
async def _closing(backend: Backend[T]) -> AsyncIterator[Backend[T]]:
    try:
        yield backend
    finally:
        for instance in backend.opened:
            await instance.close()


def alive(seconds: float = 60.0) -> float:
    """An expiry ``seconds`` from now."""
    return time.time() + seconds


@contextmanager
def captured(module: ModuleType = replay_module) -> Iterator[list[dict[str, object]]]:
    """The log events of ``module`` (whose logger is ``log``), as dicts."""
    configured = structlog.is_configured()
    with capture_logs() as logs, pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "log", structlog.get_logger(module.__name__))
        yield logs
    if not configured:  # capture_logs leaves structlog "configured"; a gateway started later would print
        structlog.reset_defaults()
