"""Small SQLite steps on the event loop, and the guard that takes them off it when the disk makes one wait.

The replay cache decides each assertion, and the consent registry looks each consent up, in one short SQLite
transaction on the event loop rather than handing it to their thread (each hand-over of the GIL costs the
loop more CPU than the step itself). Such a step normally touches only the operating system's page cache: a
few pages read, or written to the WAL without waiting for the disk (``synchronous=NORMAL``), and it never
waits for a lock (``busy_timeout`` 0: a busy file sends the call to the thread). But a page that is not in
memory is read from the disk, and a machine short of memory may hold a write back. So every step is timed:
one that took longer than ``slow_s`` takes the store's steps off the loop for ``pause_s`` — they go to its
thread meanwhile, as they would without this — and is logged (``sqlite_step_slow_on_event_loop``). A store
whose pages stay out of memory thus costs the loop at most one slow step per pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger(__name__)

SLOW_S = 0.005
PAUSE_S = 30.0


class LoopGuard:
    """Whether ``store``'s SQLite steps may run on the event loop now; ``timed()`` around each one."""

    def __init__(self, store: str, *, slow_s: float = SLOW_S, pause_s: float = PAUSE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.slow_s, self.pause_s = store, slow_s, pause_s
        self._clock = clock
        self._paused_until = float("-inf")

    def allowed(self) -> bool:
        return self._clock() >= self._paused_until

    @contextmanager
    def timed(self) -> Iterator[None]:
        began = self._clock()
        try:
            yield
        finally:
            elapsed = self._clock() - began
            if elapsed > self.slow_s:
                self._paused_until = self._clock() + self.pause_s
                log.warning("sqlite_step_slow_on_event_loop", store=self.store, elapsed_ms=round(elapsed * 1000, 3),
                            paused_s=self.pause_s)
