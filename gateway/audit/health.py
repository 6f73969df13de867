"""Whether an access-log store's database answers: tracked, so a request is refused at once while it does not.

A store whose database is another server (PostgreSQL) can vanish under a running gateway. Without tracking,
every request would wait for the driver's timeouts (pool wait, connect timeout: 10–20 s) and — worse — ask the
administrations first, then fail to log their answers. ``StoreHealth`` keeps the verdict:

* **down** as soon as an append or a ping fails; from then on ``available`` is false and the gateway refuses
  logged requests with 503 ``audit_unavailable`` before its handlers run (``gateway.web.app``), without
  waiting for anything;
* **up** again when the background probe — a fresh connection with a short, configured connect timeout, every
  ``probe_interval_s`` — succeeds, so the gateway recovers by itself;
* while up, ``ensure`` (through ``ensure_recordable``) is what a verification or a service call awaits before
  contacting any administration: free if the database
  answered within the last ``fresh_s``, else one ping (shared by the requests arriving meanwhile) bounded by
  ``ping_timeout_s``. A failed ping marks the store down and raises ``StoreUnavailable``.

The probe and the ping are the store's own coroutines; this module owns only the state machine and its timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Protocol, runtime_checkable

import structlog

from gateway import background
from gateway.errors import ServiceUnavailable

log = structlog.get_logger("gateway.audit")


class StoreUnavailable(RuntimeError):
    """The access log's database does not answer now (tracked by ``StoreHealth``)."""


@runtime_checkable
class HealthTracked(Protocol):
    """An access-log store that tracks whether its database answers (PostgreSQL)."""

    @property
    def available(self) -> bool:
        """False while the store knows its database is unreachable: refuse at once."""
        ...

    async def ensure_available(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answered just now (or answers a short ping)."""
        ...


class StoreHealth:
    """The up/down state of one store's database and the probe that brings it back (see the module)."""

    def __init__(self, name: str, ping: Callable[[], Awaitable[None]], probe: Callable[[], Awaitable[None]], *,
                 ping_timeout_s: float, fresh_s: float, probe_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._ping, self._probe = ping, probe
        self.ping_timeout_s, self.fresh_s, self.probe_interval_s = ping_timeout_s, fresh_s, probe_interval_s
        self._clock = clock
        self._up = True
        self._confirmed_at = -float("inf")  # the last time the database answered
        self._pinging: asyncio.Future[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._closed = False
        self.failures = 0  # times the store was marked down (for tests and metrics)

    @property
    def available(self) -> bool:
        return self._up

    def confirmed(self) -> None:
        """The database just answered (a commit, a ping)."""
        self._confirmed_at = self._clock()

    def failed(self, exc: BaseException) -> None:
        """An operation on the database failed: down until the probe gets an answer."""
        if self._up:
            self.failures += 1
            log.error("access_log_database_down", store=self.name, error=type(exc).__name__)
        self._up = False
        if self._prober is None and not self._closed:
            self._prober = asyncio.get_running_loop().create_task(self._probing(), name=f"{self.name}-probe")

    async def ensure(self) -> None:
        if not self._up:
            raise StoreUnavailable(f"the {self.name} database is unreachable")
        if self._clock() - self._confirmed_at <= self.fresh_s:
            return
        if self._pinging is None:  # one ping at a time; requests arriving meanwhile share its verdict
            self._pinging = asyncio.ensure_future(self._timed_ping())
            self._pinging.add_done_callback(self._ping_done)
        await asyncio.shield(self._pinging)

    def _ping_done(self, future: asyncio.Future[None]) -> None:
        self._pinging = None
        if not future.cancelled():
            future.exception()  # retrieved: the awaiting requests raise it

    async def _timed_ping(self) -> None:
        try:
            async with asyncio.timeout(self.ping_timeout_s):
                await self._ping()
        except Exception as exc:
            self.failed(exc)
            raise StoreUnavailable(f"the {self.name} database did not answer within {self.ping_timeout_s:g} s"
                                   ) from None
        self.confirmed()

    async def _probing(self) -> None:
        try:
            while not self._closed:
                await asyncio.sleep(self.probe_interval_s)
                try:
                    await self._probe()
                except Exception as exc:
                    log.debug("access_log_database_probe_failed", store=self.name, error=type(exc).__name__)
                    continue
                self._up = True
                self.confirmed()
                log.warning("access_log_database_back", store=self.name)
                return
        finally:
            self._prober = None

    async def close(self) -> None:
        self._closed = True
        for task in (self._prober, self._pinging):
            if task is not None:
                with suppress(Exception):
                    await background.stop(task)


async def ensure_recordable(health: HealthTracked | None) -> None:
    """What every path awaits before it asks an administration anything: 503 ``audit_unavailable`` unless the
    access log's database answers now (``None``: a store that needs no database server, e.g. SQLite)."""
    if health is None:
        return
    try:
        await health.ensure_available()
    except StoreUnavailable as exc:
        raise ServiceUnavailable("the access log cannot record this request", "audit_unavailable") from exc
