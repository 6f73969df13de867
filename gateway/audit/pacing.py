"""Pacing for the officers' long reads that run on a thread of the gateway process (full verification, export).

A thread that computes in Python holds the GIL: the event loop, which needs it after every ``epoll`` and every
socket call, waits up to the interpreter's switch interval (5 ms) each time, and a client's request crosses the
loop a dozen times. A ``Pacer`` makes the reading thread rest (``time.sleep``, which releases the GIL) for
``rest_s`` after every ``work_s`` of work, so the loop never waits longer than about ``work_s``: the read takes
about ``(work_s + rest_s) / work_s`` times as long, and the clients keep their latency (``bench/officers.py``).
Commands (``anss-gateway audit verify|export``) run without one: they have no clients to protect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
WORK_S = 0.002
REST_S = 0.002


class Pacer:
    def __init__(self, work_s: float = WORK_S, rest_s: float = REST_S) -> None:
        self.work_s, self.rest_s = work_s, rest_s
        self._since = time.perf_counter()
        self.rests = 0

    def __call__(self) -> None:
        """Called between small steps of the work: rests when this stretch of work has lasted ``work_s``."""
        now = time.perf_counter()
        if now - self._since >= self.work_s:
            time.sleep(self.rest_s)
            self.rests += 1
            self._since = time.perf_counter()


def paced(items: Iterable[T], pace: Callable[[], None] | None) -> Iterator[T]:
    """``items`` unchanged, ``pace`` called before each (nothing when ``pace`` is None)."""
    for item in items:
        if pace is not None:
            pace()
        yield item


def paced_writer(write: Callable[[str], object], pace: Callable[[], None] | None) -> Callable[[str], object]:
    if pace is None:
        return write

    def paced_write(text: str) -> object:
        pace()
        return write(text)

    return paced_write
