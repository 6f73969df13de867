"""The officers' long reads are paced (``gateway.audit.pacing``) and bounded (``gateway.web.heavy``)."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import pytest

from gateway.audit.pacing import Pacer, paced, paced_writer
from gateway.errors import TooManyRequests
from gateway.web.heavy import HeavyReads


def test_a_paced_loop_rests_after_each_stretch_of_work() -> None:
    pacer = Pacer(work_s=0.002, rest_s=0.002)
    started = time.perf_counter()
    for _ in paced(range(200), pacer):
        deadline = time.perf_counter() + 0.0001  # 0.1 ms of work per item
        while time.perf_counter() < deadline:
            pass
    assert pacer.rests >= 5 and time.perf_counter() - started >= 0.02 + pacer.rests * 0.002 * 0.9
    written: list[str] = []
    paced_writer(written.append, Pacer())("x")
    assert written == ["x"] and paced_writer(written.append, None) == written.append


async def test_a_paced_thread_leaves_the_event_loop_responsive() -> None:
    """A thread computing in Python while the loop sleeps 1 ms at a time: paced, the loop wakes far sooner."""
    async def median_wake_ms(pace: Pacer | None) -> float:
        stop = threading.Event()

        def burn() -> None:
            for _ in paced(iter(stop.is_set, True), pace):  # until stopped
                sum(range(200))

        worker = asyncio.get_running_loop().run_in_executor(None, burn)
        wakes = []
        for _ in range(100):
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            wakes.append((time.perf_counter() - before) * 1000)
        stop.set()
        await worker
        return statistics.median(wakes)

    unpaced, with_pacer = await median_wake_ms(None), await median_wake_ms(Pacer())
    assert with_pacer < 0.75 * unpaced, (unpaced, with_pacer)  # the interpreter's 5 ms switch interval, unpaced


async def test_heavy_reads_are_bounded_and_refused_after_a_short_wait() -> None:
    reads = HeavyReads(concurrency=2, wait_s=0.05)
    running = 0
    seen = 0

    async def read() -> None:
        nonlocal running, seen
        async with reads.slot():
            running += 1
            seen = max(seen, running)
            await asyncio.sleep(0.02)
            running -= 1

    await asyncio.gather(*(read() for _ in range(4)))
    assert seen == 2
    async with reads.slot(), reads.slot():
        with pytest.raises(TooManyRequests) as refused:
            async with reads.slot():
                pass
    assert refused.value.code == "rate_limited" and refused.value.headers["Retry-After"] == "1"
    assert reads.refused == 1
