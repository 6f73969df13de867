"""A bound on the officers' heavy reads, so that reading the log never starves the clients.

The heavy reads are the anomaly flags, the dashboard, searches, entry pages with their proofs, the integrity
panel, a full verification and the export — from the officers' API (``/v1/audit/…``) and from the console. Each
runs off the event loop (the stores' reader threads on SQLite, short statements on PostgreSQL), and at most
``CONCURRENCY`` of them run at once in a process: the cores serve the clients' verifications while one officer's
reading takes its turn. A read that finds no place within ``WAIT_S`` is refused with 429
(``rate_limited``) and a ``Retry-After``; the officer tries again (the console shows its error page).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from gateway.errors import TooManyRequests

CONCURRENCY = 2
WAIT_S = 10.0


class HeavyReads:
    """``async with reads.slot():`` — at most ``concurrency`` at once, waiting at most ``wait_s`` for a place."""

    def __init__(self, concurrency: int = CONCURRENCY, wait_s: float = WAIT_S) -> None:
        self.concurrency = concurrency
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(concurrency)
        self.refused = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_s)
        except TimeoutError as exc:
            self.refused += 1
            raise TooManyRequests(f"another officer's heavy read is running; try again in {self.wait_s:g} s",
                                   headers={"Retry-After": str(max(1, round(self.wait_s)))}) from exc
        try:
            yield
        finally:
            self._slots.release()


class _HasHeavyReads(Protocol):
    @property
    def heavy_reads(self) -> HeavyReads: ...


def heavy_read(runtime: _HasHeavyReads) -> AbstractAsyncContextManager[None]:
    """The runtime's slot for one heavy read (``async with heavy_read(runtime):``)."""
    return runtime.heavy_reads.slot()
