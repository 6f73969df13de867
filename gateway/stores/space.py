"""The free space of the disk the access log is written to, watched so operators hear of it before the log fails.

When the disk is full the access log cannot append, and a gateway that cannot log answers nothing (503
``audit_unavailable``). ``FreeSpaceWatch`` measures the free space every ``every_s`` seconds on a worker thread
(``shutil.disk_usage`` of the nearest existing directory); below the floor it is ``low``: ``/readyz`` says
``degraded`` (still serving) and the log line ``free_space_low`` is written on the way down and every
``REMIND_S`` while it stays low, ``free_space_ok`` when it is back. With PostgreSQL the log's disk is the
server's: the watch then looks at the state directory, and the database's own monitoring covers the rest.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from gateway import background

log = structlog.get_logger("gateway")
REMIND_S = 300.0


def _free_bytes(path: Path) -> int:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    raise FileNotFoundError(str(path))


class FreeSpaceWatch:
    def __init__(self, path: Path, floor_bytes: int, every_s: float, *,
                 measure: Callable[[Path], int] = _free_bytes, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.floor_bytes, self.every_s = path, floor_bytes, every_s
        self._measure, self._clock = measure, clock
        self.free_bytes: int | None = None  # unknown until measured
        self._warned_at: float | None = None

    @property
    def low(self) -> bool:
        return self.free_bytes is not None and self.free_bytes < self.floor_bytes

    async def check(self) -> None:
        try:
            self.free_bytes = await asyncio.to_thread(self._measure, self.path)
        except OSError as exc:
            log.error("free_space_unknown", path=str(self.path), error=type(exc).__name__)
            return
        now = self._clock()
        if self.low:
            if self._warned_at is None or now - self._warned_at >= REMIND_S:
                log.warning("free_space_low", path=str(self.path), free_bytes=self.free_bytes,
                            floor_bytes=self.floor_bytes,
                            detail="the access log's disk is below its free-space floor; when it is full the "
                                   "gateway refuses every request (audit_unavailable)")
                self._warned_at = now
        elif self._warned_at is not None:
            log.warning("free_space_ok", path=str(self.path), free_bytes=self.free_bytes)
            self._warned_at = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.check()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.every_s)
                await self.check()

        task = asyncio.create_task(loop(), name="free-space-watch")
        try:
            yield
        finally:
            await background.stop(task)
