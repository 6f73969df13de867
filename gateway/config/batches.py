"""``[batches]`` of ``config/gateway.toml``: population re-verification (docs/batches.md); each default once.

The store follows ``[storage]``: SQLite files (one machine) or the PostgreSQL schema (any number). The engine:
``embedded`` runs chunks inside the gateway process; ``procrastinate`` (PostgreSQL only) enqueues a job per chunk,
run by ``anss-gateway worker`` processes — and by ``serve`` itself when ``serve_works`` is true. ``auto`` (the
default) is embedded on SQLite and procrastinate on PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.toml import ConfigError, get, positive, resolve

ENGINES = ("auto", "embedded", "procrastinate")
ENGINE_ENV = "ANSS_GATEWAY_BATCH_ENGINE"


@dataclass(frozen=True)
class BatchSettings:
    database: Path | None = None  # the embedded store (SQLite); None: state_dir/batches.sqlite3
    chunk_size: int = 1_000  # subjects per chunk, the unit of work a runner claims
    max_subjects: int = 200_000  # per batch
    max_upload_bytes: int = 16 * 1024 * 1024  # per upload
    capacity: int = 8  # calls in flight per administration for batches, beside the API's own
    concurrency: int = 8  # subjects verified at once by one runner (one chunk)
    stalled_after_s: float = 30.0  # a chunk (embedded) or worker (procrastinate) silent this long is taken back
    engine: str = "auto"  # auto | embedded | procrastinate (ANSS_GATEWAY_BATCH_ENGINE)
    serve_works: bool = False  # procrastinate: `serve` also runs a worker (else it only enqueues)
    worker_concurrency: int = 2  # procrastinate: chunks one worker process runs at once
    heartbeat_s: float = 5.0  # procrastinate: a worker's heartbeat period (well under stalled_after_s)
    recover_every_s: float = 15.0  # procrastinate: how often a worker hands back the jobs of dead workers
    drain_s: float = 120.0  # on a clean stop, how long the lines in flight may finish (both engines)


def _seconds(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = float(get(table, key, float, where, default))
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: `{key}` must be a number of seconds greater than 0")
    return value


def load_batches(table: Mapping[str, Any], base: Path, where: str = "[batches]",
                 env: Mapping[str, str] | None = None) -> BatchSettings:
    d = BatchSettings()
    engine = (env or {}).get(ENGINE_ENV) or get(table, "engine", str, where, d.engine)
    if engine not in ENGINES:
        raise ConfigError(f"{where}: `engine` must be one of {', '.join(ENGINES)} (or {ENGINE_ENV})")
    settings = BatchSettings(
        database=resolve(base, get(table, "database", str, where, "")),
        chunk_size=positive(table, "chunk_size", where, d.chunk_size),
        max_subjects=positive(table, "max_subjects", where, d.max_subjects),
        max_upload_bytes=positive(table, "max_upload_bytes", where, d.max_upload_bytes),
        capacity=positive(table, "capacity", where, d.capacity),
        concurrency=positive(table, "concurrency", where, d.concurrency),
        stalled_after_s=_seconds(table, "stalled_after_s", where, d.stalled_after_s),
        engine=engine,
        serve_works=get(table, "serve_works", bool, where, d.serve_works),
        worker_concurrency=positive(table, "worker_concurrency", where, d.worker_concurrency),
        heartbeat_s=_seconds(table, "heartbeat_s", where, d.heartbeat_s),
        recover_every_s=_seconds(table, "recover_every_s", where, d.recover_every_s),
        drain_s=_seconds(table, "drain_s", where, d.drain_s),
    )
    if settings.heartbeat_s >= settings.stalled_after_s:
        raise ConfigError(f"{where}: `heartbeat_s` must be shorter than `stalled_after_s` (a live worker would "
                          "look dead)")
    return settings


def engine_for(settings: BatchSettings, storage_backend: str, where: str = "[batches]") -> str:
    """The engine that runs: ``embedded`` or ``procrastinate`` (which needs ``[storage] backend = "postgres"``)."""
    if settings.engine == "auto":
        return "procrastinate" if storage_backend == "postgres" else "embedded"
    if settings.engine == "procrastinate" and storage_backend != "postgres":
        raise ConfigError(f"{where}: `engine` 'procrastinate' needs PostgreSQL: [storage] backend = \"postgres\"")
    return settings.engine
