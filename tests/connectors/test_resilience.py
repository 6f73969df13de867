"""Circuit breakers and bulkheads per administration: the breaker's rules on a hand-driven clock, then the
real gateway in front of a failing, then recovering, simulator."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from connectors.base import (
    CallContext,
    ConnectorConfigError,
    Query,
    Record,
    SourceNotFound,
    SourceQueryRefused,
    SourceRejected,
    SourceUnavailable,
)
from connectors.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSettings,
    BulkheadSettings,
    CircuitBreaker,
    Resilient,
    SourceBulkheadFull,
    SourceCircuitOpen,
    breaker_settings,
)
from gateway.config.settings import Settings
from tests.gateway.conftest import build_stack

SETTINGS = BreakerSettings(window_size=10, minimum_calls=4, failure_rate=0.5, slow_call_rate=0.75,
                           slow_call_s=1.0, open_s=10.0, half_open_calls=2)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_once_the_failure_rate_is_reached_over_the_minimum_calls() -> None:
    breaker = CircuitBreaker(SETTINGS, Clock())
    for failed in (True, False, True):
        assert breaker.acquire()
        breaker.record(failed, 0.01)
    assert breaker.current() == CLOSED  # 2 of 3 failed, but fewer than minimum_calls
    breaker.record(False, 0.01)
    assert breaker.current() == OPEN  # 2 of 4: 50 %
    assert not breaker.acquire() and breaker.refused == 1


def test_it_stays_closed_below_the_threshold() -> None:
    breaker = CircuitBreaker(SETTINGS, Clock())
    for failed in (True, False, False, False, True, False, False, False, False, False):
        breaker.record(failed, 0.01)
    assert breaker.current() == CLOSED


def test_slow_calls_open_it_too() -> None:
    breaker = CircuitBreaker(SETTINGS, Clock())
    for elapsed in (1.2, 1.5, 0.1, 2.0):
        breaker.record(False, elapsed)
    assert breaker.current() == OPEN  # 3 of 4 slower than 1 s: 75 %


def test_half_open_lets_a_bounded_number_of_trials_through_then_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(4):
        breaker.record(True, 0.01)
    assert breaker.current() == OPEN
    clock.now = 9.9
    assert not breaker.acquire()
    clock.now = 10.0
    assert breaker.current() == HALF_OPEN
    assert breaker.acquire() and breaker.acquire()
    assert not breaker.acquire(), "only half_open_calls trials at once"
    breaker.record(False, 0.01)
    assert breaker.current() == HALF_OPEN
    breaker.record(False, 0.01)
    assert breaker.current() == CLOSED and breaker.acquire()


def test_a_failed_trial_opens_it_again_for_another_interval() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(4):
        breaker.record(True, 0.01)
    clock.now = 10.0
    assert breaker.acquire() and breaker.acquire()
    breaker.record(True, 0.01)
    breaker.record(False, 0.01)  # 1 of 2 trials failed: 50 %
    assert breaker.current() == OPEN
    clock.now = 19.9
    assert not breaker.acquire()
    clock.now = 20.0
    assert breaker.current() == HALF_OPEN


def test_settings_are_checked() -> None:
    assert breaker_settings({"open_s": 2}).open_s == 2.0
    mistakes = (({"open_seconds": 2}, "breaker.open_seconds"), ({"failure_rate": 1.5}, "breaker.failure_rate"),
                ({"minimum_calls": 30}, "breaker.minimum_calls"), ({"window_size": True}, "breaker.window_size"))
    for raw, setting in mistakes:
        with pytest.raises(ConnectorConfigError) as caught:
            breaker_settings(raw)
        assert caught.value.setting == setting


class Backend:
    """A connector whose answers the test decides; counts the calls that reach it."""

    name = "registry"
    operations = frozenset({"person"})

    def __init__(self) -> None:
        self.calls = 0
        self.outcome: Any = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def fetch(self, query: Query, ctx: CallContext) -> Record:
        self.calls += 1
        await self.gate.wait()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        from datetime import UTC, datetime
        return Record(self.name, "person", {}, datetime.now(UTC))

    async def aclose(self) -> None:
        pass


async def test_a_refused_query_is_an_answer_not_a_failure() -> None:
    """An administration's 400/422 to a query (``SourceQueryRefused``) says the parameters were wrong, not that it
    is failing: a partner sending them over and over must not open the breaker for everyone."""
    backend = Backend()
    guarded = Resilient(backend, CircuitBreaker(SETTINGS, Clock()), BulkheadSettings())
    ctx: Any = None
    backend.outcome = SourceQueryRefused("registry", "query refused (HTTP 400)")
    for _ in range(3 * SETTINGS.window_size):
        with pytest.raises(SourceQueryRefused):
            await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.current() == CLOSED
    assert guarded.breaker.snapshot()["calls_in_window"] == 0, "not recorded: neither a failure nor a success"
    backend.outcome = SourceRejected("registry", "call refused (HTTP 403)")  # the gateway's call refused: counts
    for _ in range(SETTINGS.window_size):
        with contextlib.suppress(SourceRejected, SourceUnavailable):
            await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.current() != CLOSED


async def test_while_open_no_call_reaches_the_source_and_not_found_does_not_count() -> None:
    backend = Backend()
    guarded = Resilient(backend, CircuitBreaker(SETTINGS, Clock()), BulkheadSettings())
    ctx: Any = None
    backend.outcome = SourceNotFound("registry")
    for _ in range(6):
        with pytest.raises(SourceNotFound):
            await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.current() == CLOSED  # not found is an answer: six successes in the window
    backend.outcome = SourceUnavailable("registry")
    for _ in range(4):
        with pytest.raises(SourceUnavailable):
            await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.current() == CLOSED  # 4 failures in 10
    for _ in range(1):
        with pytest.raises(SourceUnavailable):
            await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.current() == OPEN
    calls = backend.calls
    with pytest.raises(SourceCircuitOpen) as refused:
        await guarded.fetch(Query("person", {}), ctx)
    assert refused.value.code == "source_circuit_open" and backend.calls == calls


async def test_the_bulkhead_refuses_a_call_that_cannot_start_in_time() -> None:
    backend = Backend()
    backend.gate.clear()
    guarded = Resilient(backend, CircuitBreaker(SETTINGS, Clock()), BulkheadSettings(max_concurrent=2,
                                                                                     max_wait_s=0.01))
    ctx: Any = None
    held = [asyncio.create_task(guarded.fetch(Query("person", {}), ctx)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(SourceBulkheadFull) as refused:
        await guarded.fetch(Query("person", {}), ctx)
    assert refused.value.code == "source_bulkhead_full" and guarded.bulkhead_rejections == 1
    assert backend.calls == 2
    backend.gate.set()
    await asyncio.gather(*held)
    assert guarded.snapshot()["in_flight"] == 0


async def test_the_gateway_stops_calling_a_failing_registry_and_resumes_once_it_recovers(tmp_path: Path) -> None:
    def adjust(settings: Settings) -> Settings:
        quick = {"window_size": 6, "minimum_calls": 3, "failure_rate": 0.5, "open_s": 0.4, "half_open_calls": 1}
        return replace(settings, connectors=tuple(replace(c, breaker=quick) for c in settings.connectors))

    async with build_stack(tmp_path, adjust) as stack:
        idcs = stack.population.fixture("salaried_parent").father.idcs
        registry = stack.simulators.controls["civil_registry"]
        registry.fail = True
        for _ in range(3):
            answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", "CASE-CB", ["identity"])
            assert answer.json()["checks"]["identity"]["status"] == "unavailable"
        calls = registry.calls
        answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", "CASE-CB", ["identity"])
        document = answer.json()
        assert registry.calls == calls, "an open breaker sends nothing to the registry"
        assert document["checks"]["identity"]["status"] == "unavailable"
        assert document["sources"] == [{"name": "civil_registry", "status": "unavailable", "calls": 1,
                                        "latency_ms": document["sources"][0]["latency_ms"],
                                        "error": "source_circuit_open"}]
        async with stack.client.session.get(stack.gateway.url + "/readyz") as resp:
            ready = await resp.json()
        assert resp.status == 200 and ready["sources"]["civil_registry"]["state"] == "open"
        assert ready["sources"]["education"]["state"] == "closed"

        registry.fail = False
        await asyncio.sleep(0.45)  # the open interval passes: the next call is the trial
        answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", "CASE-CB", ["identity"])
        assert answer.json()["checks"]["identity"]["status"] == "verified"
        assert registry.calls == calls + 1
        async with stack.client.session.get(stack.gateway.url + "/readyz") as resp:
            assert (await resp.json())["sources"]["civil_registry"]["state"] == "closed"


def test_the_window_slides_calls_out_as_new_ones_come_in() -> None:
    """The rates are over the last ``window_size`` calls only: an old failure leaving the window no longer counts
    (the counts are kept as calls come and go, not recounted per call)."""
    settings = BreakerSettings(window_size=4, minimum_calls=4, failure_rate=0.75, slow_call_rate=1.0,
                               slow_call_s=10.0, open_s=60.0, half_open_calls=1)
    breaker = CircuitBreaker(settings, clock=lambda: 0.0)
    for failed in (True, False, False, False, False):  # the failure slides out: [ok, ok, ok, ok]
        breaker.record(failed, 0.01)
    assert breaker.snapshot()["failure_rate"] == 0.0 and breaker.state == "closed"
    for failed in (True, True):  # [ok, ok, F, F]: 0.5, under 0.75
        breaker.record(failed, 0.01)
    assert breaker.state == "closed"
    breaker.record(True, 0.01)  # [ok, F, F, F]: 0.75
    assert breaker.state == "open"
    slow = CircuitBreaker(settings, clock=lambda: 0.0)  # slow calls: 4 of 4 slow opens it, once the window is full
    for i in range(4):
        assert slow.state == "closed", i
        slow.record(False, 20.0)
    assert slow.state == "open"


def test_a_call_exactly_as_long_as_the_threshold_is_not_slow() -> None:
    breaker = CircuitBreaker(SETTINGS, Clock())
    for _ in range(4):
        breaker.record(False, SETTINGS.slow_call_s)
    assert breaker.current() == CLOSED, "slow means slower than slow_call_s (Resilience4j: duration > threshold)"


def test_an_open_breaker_shows_the_rates_that_tripped_it_until_it_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(SETTINGS, clock)
    for failed in (True, False, True, True):
        breaker.record(failed, 0.01)
    tripped = breaker.snapshot()
    assert (tripped["state"], tripped["calls_in_window"], tripped["failure_rate"]) == (OPEN, 4, 0.75)
    clock.now = 10.0
    assert breaker.snapshot()["failure_rate"] == 0.75 and breaker.current() == HALF_OPEN
    assert breaker.acquire() and breaker.acquire()
    breaker.record(False, 0.01)
    breaker.record(False, 0.01)
    closed = breaker.snapshot()
    assert (closed["state"], closed["calls_in_window"], closed["failure_rate"]) == (CLOSED, 0, 0.0)


async def test_a_query_refused_before_sending_is_not_recorded_and_gives_its_trial_back() -> None:
    clock = Clock()
    backend = Backend()
    guarded = Resilient(backend, CircuitBreaker(SETTINGS, clock), BulkheadSettings())
    ctx: Any = None
    backend.outcome = ValueError("the query breaks the operation's pattern")
    for _ in range(3):
        with pytest.raises(ValueError):
            await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.snapshot()["calls_in_window"] == 0, "the caller's mistake dilutes no rate"
    for _ in range(4):
        guarded.breaker.record(True, 0.01)
    clock.now = 10.0
    for _ in range(3):  # half-open: refused queries take no trial, so they cannot close it either
        with pytest.raises(ValueError):
            await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.current() == HALF_OPEN
    backend.outcome = None
    for _ in range(2):
        await guarded.fetch(Query("person", {}), ctx)
    assert guarded.breaker.current() == CLOSED


async def test_a_call_cancelled_while_waiting_for_a_place_gives_its_trial_back() -> None:
    clock = Clock()
    backend = Backend()
    backend.gate.clear()
    guarded = Resilient(backend, CircuitBreaker(SETTINGS, clock), BulkheadSettings(max_concurrent=1,
                                                                                     max_wait_s=5.0))
    ctx: Any = None
    for _ in range(4):
        guarded.breaker.record(True, 0.01)
    clock.now = 10.0
    first = asyncio.create_task(guarded.fetch(Query("person", {}), ctx))  # trial 1 holds the only place
    await asyncio.sleep(0)
    waiting = asyncio.create_task(guarded.fetch(Query("person", {}), ctx))  # trial 2 waits for it
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    backend.gate.set()
    await first
    assert guarded.breaker.current() == HALF_OPEN, "one trial of two recorded"
    await guarded.fetch(Query("person", {}), ctx)  # the trial given back lets this one through
    assert guarded.breaker.current() == CLOSED
