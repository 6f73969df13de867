"""Several gateway replicas: one assertion is accepted once across all of them, limits hold across them, and
replicas sharing one SQLite access log keep one intact chain. Real SQLite, real Redis."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as redis

from gateway.audit.sqlite.store import verify_database
from gateway.client import client_assertion
from gateway.config.settings import RateLimit, Settings
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path, load_gateway_key
from gateway.web.runner import gateway_running
from simulators.population import Population
from simulators.servers import start_simulators
from tests.gateway.conftest import HOUSEHOLDS, SEED, make_settings

PATH = "/v1/verifications"


async def redis_available() -> bool:
    import redis.asyncio as redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def need_redis() -> None:
    if not await redis_available():
        if os.environ.get("CI"):
            pytest.fail("Redis at 127.0.0.1:6379 is not running: CI must run the Redis suites")
        pytest.skip("Redis at 127.0.0.1:6379 is not running: Redis suite skipped")


@asynccontextmanager
async def replicas(tmp_path: Path, count: int, adjust: Callable[[Settings], Settings]) -> AsyncIterator[
        tuple[list[str], Settings, Population]]:
    settings = adjust(make_settings(tmp_path / "state"))
    population = Population(SEED, HOUSEHOLDS)
    key = load_gateway_key(settings)
    sims = await start_simulators(population, {key.kid: key.public})
    settings = settings.with_connector_urls(sims.urls)
    try:
        async with AsyncExitStack() as stack:
            urls = [(await stack.enter_async_context(gateway_running(settings, port=0))).url for _ in range(count)]
            yield urls, settings, population
    finally:
        await sims.stop()


def signed(settings: Settings, idcs: str) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"subject": {"idcs": idcs}, "purpose": "asd.eligibility", "case_ref": "REP-1",
                         "checks": ["identity"]})
    key = keys.load_or_create(dev_client_key_path(settings.state_dir, "anss.asd"))
    token = client_assertion(key, "anss.asd", settings.gateway_id, "POST", PATH, body)
    return body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object], dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(url + PATH, data=body, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read()), dict(resp.headers)


REDIS_URL = "redis://127.0.0.1:6379/0"


@asynccontextmanager
async def redis_replay_prefix() -> AsyncIterator[tuple[str, redis.Redis]]:
    """A key prefix of this test's own on the shared Redis, whose epoch is an hour old (a Redis that has been
    up for a while: no reset to refuse for); its keys are deleted after."""
    prefix = f"anss-test:{uuid.uuid4().hex}:jti:"
    client = redis.Redis.from_url(REDIS_URL)
    await client.set(prefix + "epoch", repr(time.time() - 3600))
    try:
        yield prefix, client
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def with_redis_replay(prefix: str) -> Callable[[Settings], Settings]:
    def adjust(settings: Settings) -> Settings:
        return replace(settings, replay_backend="redis", redis_url=REDIS_URL, replay_redis_prefix=prefix)

    return adjust


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_an_assertion_is_accepted_once_across_replicas(tmp_path: Path, backend: str) -> None:
    async with AsyncExitStack() as stack:
        adjust: Callable[[Settings], Settings] = lambda s: s  # noqa: E731
        if backend == "redis":
            await need_redis()
            prefix, _ = await stack.enter_async_context(redis_replay_prefix())
            adjust = with_redis_replay(prefix)
        await _accepted_once_across_replicas(tmp_path, adjust)


async def _accepted_once_across_replicas(tmp_path: Path, adjust: Callable[[Settings], Settings]) -> None:
    async with replicas(tmp_path, 2, adjust) as (urls, settings, population):
        body, headers = signed(settings, population.fixture("amo_tadamon").father.idcs)
        status, _, _ = await post(urls[0], body, headers)
        assert status == 200
        for url in urls:  # the same bytes again, at either replica
            status, doc, _ = await post(url, body, headers)
            assert (status, doc["code"]) == (401, "assertion_replayed")
        fresh_body, fresh_headers = signed(settings, population.fixture("amo_tadamon").father.idcs)
        assert (await post(urls[1], fresh_body, fresh_headers))[0] == 200, "a new assertion still works"
        log = settings.audit_database
        outcomes = [orjson.loads(row)["outcome"] for row in _entries(log)]
        assert outcomes == ["answered", "assertion_replayed", "assertion_replayed", "answered"]
        assert verify_database(log) is None, "two replicas appended to one SQLite log; the chain holds"


async def test_a_used_assertion_stays_refused_after_a_redis_reset(tmp_path: Path) -> None:
    """200, then Redis loses every key of the replay cache (its epoch included), then the same bytes: refused,
    at either replica, with a stable code and a Retry-After; the access log says why."""
    await need_redis()
    async with (redis_replay_prefix() as (prefix, client),
                replicas(tmp_path, 2, with_redis_replay(prefix)) as (urls, settings, population)):
        body, headers = signed(settings, population.fixture("amo_tadamon").father.idcs)
        assert (await post(urls[0], body, headers))[0] == 200
        lost = [key async for key in client.scan_iter(match=prefix + "*")]
        assert len(lost) == 2  # the used jti and the epoch
        await client.delete(*lost)  # a restart without persistence, a flush, a failover to an empty primary
        for url in urls:
            status, doc, answer_headers = await post(url, body, headers)
            assert (status, doc["code"]) == (503, "replay_history_lost"), doc
            assert 1 <= int(answer_headers["Retry-After"]) <= settings.clock_leeway_s
        epoch = float(await client.get(prefix + "epoch") or b"nan")
        assert epoch > time.time() - 60, "the first request after the reset started a new epoch"
        outcomes = [orjson.loads(row)["outcome"] for row in _entries(settings.audit_database)]
        assert outcomes == ["answered", "replay_history_lost", "replay_history_lost"]


def _entries(path: Path) -> list[bytes]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT entry FROM access_log ORDER BY idx")]
    finally:
        conn.close()


def tight_limit(backend: str) -> Callable[[Settings], Settings]:
    def adjust(settings: Settings) -> Settings:
        client = replace(settings.clients["anss.asd"], rate_limit=RateLimit(rate_per_s=0.01, burst=3))
        return replace(settings, rate_limit_backend=backend, redis_url="redis://127.0.0.1:6379/0",
                       clients={**settings.clients, "anss.asd": client})
    return adjust


async def test_rate_limit_holds_across_two_replicas_with_redis(tmp_path: Path) -> None:
    await need_redis()
    import redis.asyncio as redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    await client.delete(*[k async for k in client.scan_iter("anss:rl:*")] or ["-"])
    await client.aclose()
    async with replicas(tmp_path, 2, tight_limit("redis")) as (urls, settings, population):
        idcs = population.fixture("amo_tadamon").father.idcs
        statuses = []
        for i in range(6):
            body, headers = signed(settings, idcs)
            status, doc, resp_headers = await post(urls[i % 2], body, headers)
            statuses.append(status)
            if status == 429:
                assert doc["code"] == "rate_limited"
                assert int(resp_headers["Retry-After"]) >= 1
                assert resp_headers["RateLimit-Limit"] == "3" and resp_headers["RateLimit-Remaining"] == "0"
        assert statuses == [200, 200, 200, 429, 429, 429], "one budget of 3 across both replicas"


async def test_local_rate_limit_is_per_replica(tmp_path: Path) -> None:
    async with replicas(tmp_path, 2, tight_limit("local")) as (urls, settings, population):
        idcs = population.fixture("amo_tadamon").father.idcs
        statuses = []
        for i in range(8):
            body, headers = signed(settings, idcs)
            statuses.append((await post(urls[i % 2], body, headers))[0])
        assert statuses == [200] * 6 + [429, 429], "each replica has its own budget of 3"


async def test_refused_when_replay_protection_is_down(tmp_path: Path) -> None:
    def broken(settings: Settings) -> Settings:
        return replace(settings, replay_backend="redis", redis_url=f"redis://127.0.0.1:1/{uuid.uuid4().int % 15}")

    async with replicas(tmp_path, 1, broken) as (urls, settings, population):
        body, headers = signed(settings, population.fixture("amo_tadamon").father.idcs)
        started = time.monotonic()
        status, doc, _ = await post(urls[0], body, headers)
        assert (status, doc["code"]) == (503, "not_ready"), "fail closed: no answer without replay protection"
        assert time.monotonic() - started < 30
