"""Resilience per administration: a circuit breaker and a bulkhead around each connector.

The breaker follows Resilience4j's model. It records the outcome of each call in a count-based sliding window of
the last ``window_size`` calls; once at least ``minimum_calls`` are recorded, it opens when the share of failures
reaches ``failure_rate`` or the share of calls slower than ``slow_call_s`` reaches ``slow_call_rate``. While open,
every call is refused at once (``SourceCircuitOpen``, code ``source_circuit_open``) without reaching the
administration. After ``open_s`` it lets ``half_open_calls`` trial calls through (any other call is still
refused); when they have all completed it closes if their failure and slow-call rates are under the thresholds,
else it opens again for another ``open_s``.

A failure is what says the administration is not answering usefully: a timeout, an unavailable, faulty,
malformed or oversized answer, or a rejection of the gateway's call. "Not found" is a normal answer (a success).
The administration's refusal of the query itself (``SourceQueryRefused``, an HTTP 400 or 422) is not recorded at
all: a partner's out-of-range parameters must neither open the breaker for everyone nor, counted as successes,
hide real failures in the window. Nor is a query the connector refuses before sending (``ValueError``, the
caller's mistake), nor a call cancelled by its caller (it says nothing of the administration); a half-open trial
any of these held is given back. A call is slow when
it takes longer than ``slow_call_s``. The window's rates are kept while open and half-open (what tripped it), and
cleared when the breaker closes again; ``refused`` counts every call refused by the breaker, while open and,
beyond its trial calls, while half-open.

The bulkhead bounds the calls in flight to one administration (``max_concurrent``); a call that cannot start
within ``max_wait_s`` is refused (``SourceBulkheadFull``, code ``source_bulkhead_full``), so one slow registry
cannot hold every request waiting. Retries (REST reads, see ``connectors.rest``) happen inside the connector,
hence inside the breaker and the bulkhead and within the call's deadline.

There is no library here that gives these semantics on asyncio (``circuitbreaker`` lets every coroutine through
while half-open, ``purgatory`` counts consecutive failures only, ``pybreaker`` has no asyncio release), so this
module keeps its own, short.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from opentelemetry.trace import Status, StatusCode

from connectors.base import (
    CallContext,
    Connector,
    ConnectorConfigError,
    ConnectorError,
    Query,
    Record,
    SourceNotFound,
    SourceQueryRefused,
    SourceUnavailable,
)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class SourceCircuitOpen(SourceUnavailable):
    code = "source_circuit_open"


class SourceBulkheadFull(SourceUnavailable):
    code = "source_bulkhead_full"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """``[connector.breaker]`` of an administration's file; each default is written here only."""

    window_size: int = 20
    minimum_calls: int = 10
    failure_rate: float = 0.5
    slow_call_rate: float = 0.8
    slow_call_s: float = 1.5
    open_s: float = 10.0
    half_open_calls: int = 3


@dataclass(frozen=True, slots=True)
class BulkheadSettings:
    """``[connector.bulkhead]``: calls in flight at most, and how long a call may wait for a place."""

    max_concurrent: int = 64
    max_wait_s: float = 0.05


def _parse(cls: type, raw: Any, setting: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConnectorConfigError(setting, "must be a table")
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if not hasattr(defaults, key):
            raise ConnectorConfigError(f"{setting}.{key}", f"unknown setting; allowed: {[f.name for f in fields(cls)]}")
        default = getattr(defaults, key)
        if (isinstance(default, int) and not isinstance(value, int)) or isinstance(value, bool):
            raise ConnectorConfigError(f"{setting}.{key}", "must be a positive integer")
        if isinstance(default, float) and not isinstance(value, int | float):
            raise ConnectorConfigError(f"{setting}.{key}", "must be a number")
        if value <= 0 or (key.endswith("_rate") and value > 1):
            raise ConnectorConfigError(f"{setting}.{key}", "must be > 0" + (" and at most 1" if "rate" in key else ""))
        values[key] = float(value) if isinstance(default, float) else value
    parsed = cls(**values)
    if isinstance(parsed, BreakerSettings) and parsed.minimum_calls > parsed.window_size:
        raise ConnectorConfigError(f"{setting}.minimum_calls", "cannot exceed window_size")
    return parsed


def breaker_settings(raw: Any) -> BreakerSettings:
    parsed: BreakerSettings = _parse(BreakerSettings, raw, "breaker")
    return parsed


def bulkhead_settings(raw: Any) -> BulkheadSettings:
    parsed: BulkheadSettings = _parse(BulkheadSettings, raw, "bulkhead")
    return parsed


class CircuitBreaker:
    """The breaker of one administration. ``clock`` is injectable for tests (monotonic seconds)."""

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self.state = CLOSED
        self._window: deque[tuple[bool, bool]] = deque(maxlen=settings.window_size)  # (failed, slow)
        self._failed = self._slow = 0  # in the window, kept as calls come and go (no count over it per call)
        self._opened_at = 0.0
        self._trials_started = 0
        self._trials: list[tuple[bool, bool]] = []
        self.refused = 0

    def _set(self, state: str) -> None:
        if state != self.state:
            previous, self.state = self.state, state
            if self._on_change is not None:
                self._on_change(previous, state)

    def current(self) -> str:
        """The state now (an open breaker whose interval is over is half-open)."""
        if self.state == OPEN and self._clock() - self._opened_at >= self.settings.open_s:
            self._set(HALF_OPEN)
            self._trials_started, self._trials = 0, []
        return self.state

    def acquire(self) -> bool:
        """May a call go through now? (A half-open breaker admits its trial calls only.)"""
        state = self.current()
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self._trials_started < self.settings.half_open_calls:
            self._trials_started += 1
            return True
        self.refused += 1
        return False

    def record(self, failed: bool, elapsed_s: float) -> None:
        outcome = (failed, elapsed_s > self.settings.slow_call_s)  # slower than the threshold (Resilience4j's >)
        if self.state == HALF_OPEN:
            self._trials.append(outcome)
            if len(self._trials) >= self.settings.half_open_calls:
                if self._over_thresholds(self._trials):
                    self._open()
                else:
                    self._clear_window()
                    self._set(CLOSED)
            return
        if self.state == OPEN:  # a call admitted before the breaker opened: its outcome is no longer news
            return
        if len(self._window) == self._window.maxlen:  # the oldest leaves the window
            gone_failed, gone_slow = self._window[0]
            self._failed -= gone_failed
            self._slow -= gone_slow
        self._window.append(outcome)
        self._failed += outcome[0]
        self._slow += outcome[1]
        total = len(self._window)
        if total >= self.settings.minimum_calls and (self._failed / total >= self.settings.failure_rate
                                                     or self._slow / total >= self.settings.slow_call_rate):
            self._open()

    def release(self) -> None:
        """A call that was admitted but never made (the bulkhead refused it): give its trial back."""
        if self.state == HALF_OPEN and self._trials_started > len(self._trials):
            self._trials_started -= 1

    def _over_thresholds(self, outcomes: Any) -> bool:
        total = len(outcomes)
        failures = sum(1 for failed, _ in outcomes if failed)
        slow = sum(1 for _, is_slow in outcomes if is_slow)
        return failures / total >= self.settings.failure_rate or slow / total >= self.settings.slow_call_rate

    def _clear_window(self) -> None:
        self._window.clear()
        self._failed = self._slow = 0

    def _open(self) -> None:
        """Open; the window is kept as it was, so that its rates (what tripped it) show while open and half-open,
        and is cleared only when the breaker closes again."""
        self._opened_at = self._clock()
        self._set(OPEN)

    def snapshot(self) -> dict[str, Any]:
        state = self.current()
        window = list(self._window)
        return {"state": state, "calls_in_window": len(window),
                "failure_rate": round(sum(f for f, _ in window) / len(window), 3) if window else 0.0,
                "slow_call_rate": round(sum(s for _, s in window) / len(window), 3) if window else 0.0,
                "refused": self.refused}


class Resilient:
    """A connector behind its breaker and bulkhead; satisfies ``connectors.base.Connector`` and passes
    ``describe`` through."""

    def __init__(self, inner: Connector, breaker: CircuitBreaker, bulkhead: BulkheadSettings) -> None:
        self.inner = inner
        self.breaker = breaker
        self.bulkhead = bulkhead
        self._slots = asyncio.Semaphore(bulkhead.max_concurrent)
        self.in_flight = 0
        self.bulkhead_rejections = 0
        # set by the gateway: observe(source, operation, outcome, elapsed_s) after every call (metrics), and an
        # OpenTelemetry tracer for one span per call (traces); outcome is "ok", "not_found" or a failure's code
        self.observe: Callable[[str, str, str, float], None] | None = None
        self.tracer: Any = None

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def operations(self) -> frozenset[str]:
        return self.inner.operations

    def describe(self, operation: str) -> Any:
        return self.inner.describe(operation)  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def fetch(self, query: Query, ctx: CallContext) -> Record:
        if self.tracer is None:
            return await self._guarded(query, ctx)
        # the span names the administration and the operation, never a parameter's value
        with self.tracer.start_as_current_span(f"{self.name} {query.operation}",
                                               attributes={"anss.source": self.name,
                                                           "anss.operation": query.operation},
                                               record_exception=False, set_status_on_exception=False) as span:
            try:
                return await self._guarded(query, ctx)
            except SourceNotFound:  # an answer ("not known"), not an error of the call
                span.set_attribute("anss.outcome", "not_found")
                raise
            except BaseException as exc:
                if isinstance(exc, ConnectorError):
                    span.set_attribute("anss.outcome", exc.code)
                if not isinstance(exc, asyncio.CancelledError):
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))  # (the class, never a text)
                raise

    async def _guarded(self, query: Query, ctx: CallContext) -> Record:
        started = time.monotonic()
        outcome = "ok"
        try:
            return await self._admitted(query, ctx)
        except ConnectorError as exc:
            outcome = "not_found" if isinstance(exc, SourceNotFound) else exc.code
            raise
        except ValueError:
            outcome = "refused_query"
            raise
        except Exception:
            outcome = "source_error"
            raise
        finally:
            if self.observe is not None:
                self.observe(self.name, query.operation, outcome, time.monotonic() - started)

    async def _admitted(self, query: Query, ctx: CallContext) -> Record:
        if not self.breaker.acquire():
            raise SourceCircuitOpen(self.name, "circuit open: recent calls failed")
        try:
            if self._slots.locked():  # full: wait a little for a place
                await asyncio.wait_for(self._slots.acquire(), self.bulkhead.max_wait_s)
            else:  # a free place is taken at once (no timer, no task)
                await self._slots.acquire()
        except TimeoutError:
            self.breaker.release()
            self.bulkhead_rejections += 1
            raise SourceBulkheadFull(self.name, "too many calls in flight") from None
        except asyncio.CancelledError:  # gone while waiting for a place: never made, its trial is given back
            self.breaker.release()
            raise
        self.in_flight += 1
        started = time.monotonic()
        failed, counted = False, True
        try:
            return await self.inner.fetch(query, ctx)
        except SourceNotFound:
            raise
        except SourceQueryRefused:  # the query did not fit (400/422): says nothing of the administration's health
            counted = False
            raise
        except ConnectorError:
            failed = True
            raise
        except ValueError:  # refused before sending: the caller's mistake, says nothing about the administration
            counted = False
            raise
        except asyncio.CancelledError:  # the request went away: says nothing about the administration
            counted = False
            raise
        except Exception:
            failed = True
            raise
        finally:
            self.in_flight -= 1
            self._slots.release()
            if counted:
                self.breaker.record(failed, time.monotonic() - started)
            else:
                self.breaker.release()

    def snapshot(self) -> dict[str, Any]:
        return {**self.breaker.snapshot(), "in_flight": self.in_flight,
                "bulkhead_rejections": self.bulkhead_rejections}
