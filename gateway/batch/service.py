"""What the ``/v1/batches`` handlers use: the store, the engine to wake, and the limits; and how the gateway picks
its store and engine from the settings (``[storage]`` and ``[batches]``, docs/batches.md)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.batch.store import BatchStore, SqliteBatchStore
from gateway.config.batches import engine_for
from gateway.config.settings import Settings

if TYPE_CHECKING:
    from gateway.web.state import Runtime


class Engine(Protocol):
    """Runs the chunks of batches: ``EmbeddedEngine`` (in this process) or ``ProcrastinateEngine`` (job queue)."""

    def wake(self) -> None: ...

    def running(self) -> AbstractAsyncContextManager[Any]: ...


@dataclass
class BatchService:
    store: BatchStore
    engine: Engine | None
    chunk_size: int
    max_subjects: int
    max_upload_bytes: int
    stalled_after_s: float = 30.0  # a chunk whose heartbeat is older is no longer at work

    def wake(self) -> None:
        if self.engine is not None:
            self.engine.wake()


def batch_store(settings: Settings) -> BatchStore:
    """The configured store (not opened yet): PostgreSQL when ``[storage]`` is, else the SQLite file."""
    if settings.storage_backend == "postgres" and settings.database is not None:
        from gateway.batch.postgres import PostgresBatchStore

        return PostgresBatchStore(settings.database, pool_size=settings.batches.worker_concurrency + 4)
    return SqliteBatchStore(settings.batches.database or settings.state_dir / "batches.sqlite3")


def batch_engine(runtime: Runtime, store: BatchStore, *, worker: bool = False) -> Engine:
    """The configured engine over ``store``; ``worker``: this process is ``anss-gateway worker`` (it works)."""
    b = runtime.settings.batches
    if engine_for(b, runtime.settings.storage_backend) == "procrastinate":
        from gateway.batch.jobs import ProcrastinateEngine
        from gateway.batch.postgres import PostgresBatchStore

        assert isinstance(store, PostgresBatchStore)
        return ProcrastinateEngine(runtime, store, b, works=worker or b.serve_works)
    from gateway.batch.runner import EmbeddedEngine

    return EmbeddedEngine(runtime, store, capacity=b.capacity, concurrency=b.concurrency,
                          stalled_after_s=b.stalled_after_s, drain_s=b.drain_s)
