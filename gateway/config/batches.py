"""``[batches]`` of ``config/gateway.toml``: population re-verification (docs/batches.md); each default once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.toml import ConfigError, get, positive, resolve


@dataclass(frozen=True)
class BatchSettings:
    database: Path | None = None  # the embedded store (SQLite); None: state_dir/batches.sqlite3
    chunk_size: int = 1_000  # subjects per chunk, the unit of work a runner claims
    max_subjects: int = 200_000  # per batch
    max_upload_bytes: int = 16 * 1024 * 1024  # per upload
    capacity: int = 8  # calls in flight per administration for batches, beside the API's own
    concurrency: int = 8  # subjects verified at once by one runner
    stalled_after_s: float = 30.0  # a chunk whose runner has not heartbeated for this long is taken back


def load_batches(table: Mapping[str, Any], base: Path, where: str = "[batches]") -> BatchSettings:
    d = BatchSettings()
    settings = BatchSettings(
        database=resolve(base, get(table, "database", str, where, "")),
        chunk_size=positive(table, "chunk_size", where, d.chunk_size),
        max_subjects=positive(table, "max_subjects", where, d.max_subjects),
        max_upload_bytes=positive(table, "max_upload_bytes", where, d.max_upload_bytes),
        capacity=positive(table, "capacity", where, d.capacity),
        concurrency=positive(table, "concurrency", where, d.concurrency),
        stalled_after_s=get(table, "stalled_after_s", float, where, d.stalled_after_s),
    )
    if settings.stalled_after_s <= 0:
        raise ConfigError(f"{where}: `stalled_after_s` must be > 0")
    return settings
