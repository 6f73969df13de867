"""What the ``/v1/batches`` handlers use: the store, the engine to wake, and the limits."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.batch.runner import EmbeddedEngine
from gateway.batch.store import SqliteBatchStore


@dataclass
class BatchService:
    store: SqliteBatchStore
    engine: EmbeddedEngine | None
    chunk_size: int
    max_subjects: int
    max_upload_bytes: int

    def wake(self) -> None:
        if self.engine is not None:
            self.engine.wake()
