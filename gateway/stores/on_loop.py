"""Small SQLite steps on the event loop, and the guard that takes them off it when the disk makes one wait.

The replay cache decides each assertion, the consent registry looks each consent up, and the access log
commits each turn's appends (then syncs them on its thread before anyone is answered), in one short SQLite
transaction on the event loop rather than handing it to their thread (each hand-over of the GIL costs the
loop more CPU than the step itself). Such a step normally touches only the operating system's page cache: a
few pages read, or written to the WAL without waiting for the disk (``synchronous=NORMAL``), and it never
waits for a lock (``busy_timeout`` 0: a busy file sends the call to the thread). But a page that is not in
memory is read from the disk, and a machine short of memory may hold a write back. So every step is timed.
A single slow step is forgiven: the scheduler of a busy machine (or a container's CPU quota) preempts the loop
in the middle of a step as easily as the disk holds it up. A second step slower than ``slow_s`` within
``forgive_s`` of the first takes the store's steps off the loop for ``pause_s`` — they go to its thread
meanwhile, as they would without this — and is logged (``sqlite_step_slow_on_event_loop``). A store whose
pages stay out of memory thus costs the loop at most two slow steps per pause.

``LoopConnection`` is the store's connection for those steps: ``run(step)`` is the step's result, or ``None``
when the step belongs on the thread this time (paused, busy, or in use by another event loop).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")

SLOW_S = 0.005
PAUSE_S = 30.0
FORGIVE_S = 10.0


class LoopGuard:
    """Whether ``store``'s SQLite steps may run on the event loop now; ``timed()`` around each one."""

    def __init__(self, store: str, *, slow_s: float = SLOW_S, pause_s: float = PAUSE_S, forgive_s: float = FORGIVE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.slow_s, self.pause_s, self.forgive_s = store, slow_s, pause_s, forgive_s
        self._clock = clock
        self._paused_until = float("-inf")
        self._last_slow = float("-inf")  # when the last slow step ended (a first one is forgiven)

    def allowed(self) -> bool:
        return self._clock() >= self._paused_until

    @contextmanager
    def timed(self) -> Iterator[None]:
        began = self._clock()
        try:
            yield
        finally:
            ended = self._clock()
            elapsed = ended - began
            if elapsed > self.slow_s:
                if ended - self._last_slow > self.forgive_s:  # the first in a while: a preemption, perhaps
                    self._last_slow = ended
                else:
                    self._paused_until, self._last_slow = ended + self.pause_s, float("-inf")
                    log.warning("sqlite_step_slow_on_event_loop", store=self.store,
                                elapsed_ms=round(elapsed * 1000, 3), paused_s=self.pause_s)


class LoopConnection:
    """A store's own connection for its steps on the event loop: it never waits for a lock (``busy_timeout`` 0),
    takes ``pragmas`` (``"synchronous=NORMAL"``, ``"query_only=1"``…), and runs under ``guard``."""

    def __init__(self, path: Path, guard: LoopGuard, pragmas: tuple[str, ...] = ()) -> None:
        self.guard = guard
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self._lock = threading.Lock()  # (one event loop at a time on this connection)
        self._conn.execute("PRAGMA busy_timeout=0")
        for pragma in pragmas:
            self._conn.execute(f"PRAGMA {pragma}")

    def run(self, step: Callable[[sqlite3.Connection], T]) -> T | None:
        """``step(connection)``, timed; ``None`` when it is for the thread instead: the guard has paused the loop's
        steps, another event loop is using the connection, or SQLite is busy (a transaction the step left open is
        rolled back)."""
        if not self.guard.allowed() or not self._lock.acquire(blocking=False):
            return None
        try:
            with self.guard.timed():
                return step(self._conn)
        except BaseException as exc:
            if self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):  # busy at once (busy_timeout 0): the thread waits
                return None
            raise
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
