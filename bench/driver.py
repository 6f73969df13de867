"""The closed-loop driver both sides run: ``concurrency`` workers, each starting a new verification when its last
one ends; a ``Phase`` holds what was measured (rate, latencies, backend calls, CPU of each process)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.measure import cpu_seconds, system_busy_seconds

WorkFn = Callable[[int, dict[str, int]], Awaitable[bool]]


@dataclass
class Phase:
    name: str
    done: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    cpu_self_s: float = 0.0
    cpu_sims_s: float = 0.0
    cpu_client_s: float = 0.0  # --client-process: the load generator's process (else its CPU is in cpu_self_s)
    cpu_others_s: float = 0.0  # what other processes on the machine used meanwhile
    cpu_loop_s: float = 0.0  # the event-loop thread alone (part of cpu_self_s): the side's bottleneck
    latencies_ms: list[float] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


async def drive(name: str, work: WorkFn, start: int, count: int | None, duration_s: float | None,
                concurrency: int, sims_pid: int, keep_latencies: bool = True,
                on_progress: Callable[[Phase], None] | None = None) -> Phase:
    """``concurrency`` workers take request numbers ``start, start+1, ...`` until ``count`` or the deadline."""
    phase = Phase(name)
    end = None if count is None else start + count
    next_i = start
    began = time.perf_counter()
    deadline = None if duration_s is None else began + duration_s

    async def worker() -> None:
        nonlocal next_i
        while (end is None or next_i < end) and (deadline is None or time.perf_counter() < deadline):
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            try:
                ok = await work(i, phase.calls)
            except Exception as exc:
                ok = False
                if len(phase.errors) < 5:
                    phase.errors.append(f"{type(exc).__name__}: {exc}")
            if keep_latencies:
                phase.latencies_ms.append((time.perf_counter() - t0) * 1000)
            if ok:
                phase.done += 1
            else:
                phase.failed += 1
            if on_progress is not None:
                on_progress(phase)

    cpu0, sims0, all0, loop0 = time.process_time(), cpu_seconds(sims_pid), system_busy_seconds(), time.thread_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.elapsed_s = time.perf_counter() - began
    phase.cpu_self_s = time.process_time() - cpu0
    phase.cpu_loop_s = time.thread_time() - loop0  # drive runs on the loop's thread
    phase.cpu_sims_s = cpu_seconds(sims_pid) - sims0
    phase.cpu_others_s = max(0.0, system_busy_seconds() - all0 - phase.cpu_self_s - phase.cpu_sims_s)
    return phase
