"""A PostgreSQL outage fails fast and heals by itself (gateway/audit/health.py).

The shared server is never touched: the gateway reaches PostgreSQL through a TCP proxy on loopback that this test
starts, stops (every connection cut, the port closed: what an outage or a failover looks like from the gateway)
and starts again. While it is stopped, verifications are refused with 503 ``audit_unavailable`` before any
administration is asked, with every wait bounded by the configured timeouts; once it is back, the store's probe
notices and the gateway answers again without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.audit.health import StoreHealth, StoreUnavailable
from gateway.config.settings import ConfigError, Settings
from gateway.config.storage import database_timeouts
from gateway.crypto.jws import request_digest
from gateway.stores.postgres import DatabaseTimeouts, PostgresTarget
from gateway.web.state import RUNTIME
from tests.audit.pg_support import fresh_schema_async
from tests.consent.conftest import calls
from tests.gateway.conftest import Stack, build_stack

FAST = DatabaseTimeouts(connect_timeout_s=1.0, pool_wait_s=1.0, ping_timeout_s=0.5, health_fresh_s=0.0,
                        probe_interval_s=0.2)


class Proxy:
    """A TCP proxy on loopback to the PostgreSQL server; ``stop`` cuts every connection and closes the port."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes.difference_update((writer, up_writer))


@asynccontextmanager
async def gateway_through_proxy(tmp_path: Path) -> AsyncIterator[tuple[Stack, Proxy]]:
    async with fresh_schema_async() as direct:
        parts = conninfo_to_dict(direct.dsn)
        proxy = Proxy(str(parts.get("host") or "127.0.0.1"), int(parts.get("port") or 5432))
        await proxy.start()
        target = PostgresTarget(make_conninfo(direct.dsn, host="127.0.0.1", port=str(proxy.port)), direct.schema,
                                FAST)

        def postgres(settings: Settings) -> Settings:
            return replace(settings, storage_backend="postgres", database=target)

        try:
            async with build_stack(tmp_path, postgres) as stack:
                yield stack, proxy
        finally:
            if proxy._server is None:
                await proxy.start()  # (the stack, closing, signs its last head through it)
            await proxy.stop()


async def until(condition: object, limit_s: float = 20.0) -> None:
    """Wait until ``condition()`` holds (a wait, not an assertion on time: the limit only stops a hung test)."""
    deadline = time.monotonic() + limit_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.05)


async def test_an_outage_is_refused_before_any_administration_and_heals_by_itself(tmp_path: Path) -> None:
    async with gateway_through_proxy(tmp_path) as (stack, proxy):
        subject = {"idcs": stack.population.fixture("amo_tadamon").father.idcs}
        assert (await stack.client.verify(subject, "asd.eligibility", "PG-UP", ["identity"])).status == 200
        runtime = stack.gateway.runner.app[RUNTIME]
        health = runtime.log_health
        assert health is not None and health.available

        await proxy.stop()
        before = calls(stack)
        started = time.monotonic()
        first = await stack.client.verify(subject, "asd.eligibility", "PG-DOWN-1", ["identity"])
        first_s = time.monotonic() - started
        started = time.monotonic()
        second = await stack.client.verify(subject, "asd.eligibility", "PG-DOWN-2", ["identity", "household"])
        second_s = time.monotonic() - started
        print(f"\nPostgreSQL away: first refusal in {first_s * 1000:.0f} ms (a ping), the next in "
              f"{second_s * 1000:.0f} ms (known down)")
        for answer in (first, second):
            assert (answer.status, answer.json()["code"]) == (503, "audit_unavailable")
        assert first.signature_header is not None, "signed and bound to the question, like every answer"
        known_down = await stack.client.verify_signature(second.headers, second.body)
        assert known_down is not None and known_down["request_sha256"] == request_digest("", b""), \
            "refused before the assertion was read: bound with the empty jti"
        assert calls(stack) == before, "no administration was asked while the access log could not record"
        assert not health.available
        # every wait on the way is bounded by the configuration, and those bounds are short
        timeouts = stack.settings.database.timeouts if stack.settings.database else None
        assert timeouts == FAST and timeouts.ping_timeout_s <= 1.0 and timeouts.connect_timeout_s <= 1.0
        async with aiohttp.ClientSession() as session, session.get(stack.gateway.url + "/readyz") as resp:
            assert resp.status == 503 and (await resp.json())["checks"]["store"] is False

        await proxy.start()  # the database is back: the probe notices, nobody restarts anything
        await until(lambda: health.available)
        back = await stack.client.verify(subject, "asd.eligibility", "PG-BACK", ["identity"])
        assert back.status == 200 and calls(stack) > before


async def test_the_health_state_machine() -> None:
    pings: list[str] = []
    probes: list[str] = []
    answering = {"ping": False, "probe": False}

    async def ping() -> None:
        pings.append("ping")
        if not answering["ping"]:
            raise OSError("connection refused")

    async def slow_ping() -> None:
        await asyncio.sleep(10)

    async def probe() -> None:
        probes.append("probe")
        if not answering["probe"]:
            raise OSError("connection refused")

    health = StoreHealth("test", ping, probe, ping_timeout_s=0.2, fresh_s=0.0, probe_interval_s=0.01)
    results = await asyncio.gather(health.ensure(), health.ensure(), health.ensure(), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results) and pings == ["ping"], "one ping for all three"
    assert not health.available and health.failures == 1
    with pytest.raises(StoreUnavailable):
        await health.ensure()
    assert pings == ["ping"], "known down: refused without asking"
    await until(lambda: len(probes) >= 3)
    assert not health.available
    answering["probe"] = answering["ping"] = True
    await until(lambda: health.available)
    await health.ensure()
    hanging = StoreHealth("test", slow_ping, probe, ping_timeout_s=0.05, fresh_s=0.0, probe_interval_s=0.01)
    with pytest.raises(StoreUnavailable, match=r"within 0\.05 s"):
        await hanging.ensure()  # a database that hangs is as away as one that refuses
    await health.close()
    await hanging.close()


@pytest.mark.parametrize("setting", ["connect_timeout_s", "pool_wait_s", "ping_timeout_s", "probe_interval_s"])
def test_storage_timeouts_must_be_positive(setting: str) -> None:
    with pytest.raises(ConfigError, match=f"`{setting}` must be a number of seconds greater than 0"):
        database_timeouts({setting: 0}, "[storage]")
    assert database_timeouts({}, "[storage]") == DatabaseTimeouts()
    assert database_timeouts({"health_fresh_s": 0}, "[storage]").health_fresh_s == 0
