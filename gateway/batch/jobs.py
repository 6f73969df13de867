"""Batches on procrastinate: a job per chunk on PostgreSQL, run by any number of ``anss-gateway worker`` processes
on any number of machines (docs/batches.md).

* **Enqueued with the batch.** ``ProcrastinateEngine`` is the ``PostgresBatchStore``'s outbox: the batch's chunk
  jobs (task ``anss_gateway.batch_chunk``, queue ``batches``) are deferred inside the transaction that creates it.
* **The job** is ``gateway.batch.runner.run_chunk`` — the embedded engine's code — under the chunk's lease
  (``PostgresBatchStore.chunk_lease``): lines without a result are verified, each one access-log entry, results
  written ``ON CONFLICT DO NOTHING``; a line claimed by a killed worker whose entry exists becomes
  ``batch_interrupted`` rather than being asked and logged twice. A failure (the lease taken, the log's database
  away, the log corrupt) is retried by procrastinate after a pause that grows with the attempts.
* **Workers heartbeat** (procrastinate's ``procrastinate_workers`` table) and each has a unique name
  (host, process, random), so a restarted pod is never taken for the one that died. Finished jobs are deleted:
  a large jobs table slows every worker's start.
* **Stalled jobs.** A worker killed with SIGKILL leaves its jobs ``doing``; procrastinate itself only prunes dead
  workers when one starts, and a periodic *job* to retry them could stall with its own worker. So every working
  process runs a recovery loop of its own (``recover``, every ``recover_every_s``): it deletes the workers whose
  heartbeat is older than ``stalled_after_s`` (their jobs lose their worker) and retries every ``doing`` chunk job
  whose worker is stale or gone (``get_stalled_jobs`` by heartbeat) — several processes doing it at once is
  harmless (a job already retried is skipped).
* **SIGTERM drains**: the worker stops fetching and waits up to ``drain_s`` for its running chunks (a chunk cut
  short is retried elsewhere, writing nothing twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from gateway import background
from gateway.batch.postgres import PostgresBatchStore
from gateway.batch.runner import batch_federation, heartbeat, run_chunk
from gateway.batch.store import Batch, Chunk
from gateway.config.batches import BatchSettings
from gateway.stores.postgres import PostgresTarget, in_ddl_lock

if TYPE_CHECKING:
    import procrastinate
    import psycopg
    from procrastinate.types import JSONValue

    from gateway.web.state import Runtime

log = structlog.get_logger(__name__)

CHUNK_TASK = "anss_gateway.batch_chunk"
QUEUE = "batches"


class ChunkBusy(RuntimeError):
    """Another live process holds this chunk's lease: retried later."""


def worker_name() -> str:
    """Unique per process: host, pid and a random part (procrastinate issue #1518: never reuse a dead one's)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def ensure_procrastinate_schema(target: PostgresTarget) -> None:
    """procrastinate's tables and functions in the ``[storage]`` schema, created once under the schema's DDL lock
    (several processes may start together)."""
    from procrastinate.schema import SchemaManager

    async def create(conn: psycopg.AsyncConnection[Any]) -> None:
        row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
        if row is None or row[0] is None:
            await conn.execute(SchemaManager.get_schema())

    conn = await target.connect()
    try:
        await in_ddl_lock(target, conn, create)
    finally:
        await conn.close()


def procrastinate_app(target: PostgresTarget, pool_size: int) -> procrastinate.App:
    """A procrastinate ``App`` on psycopg 3 async, every connection in the target's schema (libpq ``options``, so
    its LISTEN connection too)."""
    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=target.dsn, min_size=1, max_size=pool_size, timeout=target.timeouts.pool_wait_s,
        kwargs={"options": f"-c search_path={target.schema}",
                "connect_timeout": target.timeouts.libpq_connect_timeout})
    return procrastinate.App(connector=connector)


class ProcrastinateEngine:
    """Enqueues chunk jobs with each batch; with ``works``, also runs a procrastinate worker in this process."""

    def __init__(self, runtime: Runtime, store: PostgresBatchStore, settings: BatchSettings, *, works: bool) -> None:
        import procrastinate

        self.runtime, self.store, self.settings, self.works = runtime, store, settings, works
        self.federation = batch_federation(runtime.federation, settings.capacity)
        self.app = procrastinate_app(store.target, pool_size=settings.worker_concurrency + 3)
        self.name = worker_name()
        self.task = self.app.task(name=CHUNK_TASK, queue=QUEUE, pass_context=True,
                                  retry=procrastinate.RetryStrategy(max_attempts=50, wait=2, linear_wait=2))(
            self._chunk)
        store.outbox = self.enqueue
        self.recovered = 0  # jobs this process handed back from dead workers (the tests and bench read it)

    def wake(self) -> None:
        """Nothing to do: the job's insertion notifies the workers (LISTEN/NOTIFY)."""

    async def enqueue(self, conn: psycopg.AsyncConnection[Any], batch: Batch, chunks: Sequence[Chunk]) -> None:
        """The batch's chunk jobs, deferred on ``conn`` — inside the transaction that creates the batch."""
        jobs: list[dict[str, JSONValue]] = [{"batch_id": c.batch_id, "first": c.first, "last": c.last}
                                            for c in chunks]
        await self.task.configure(connection=conn).batch_defer_async(*jobs)

    async def _chunk(self, context: Any, batch_id: str, first: int, last: int) -> None:
        chunk = Chunk(batch_id, first, last, int(context.job.attempts))
        async with self.store.chunk_lease(chunk) as held:
            if not held:
                raise ChunkBusy(f"chunk {batch_id}:{first} is being worked on by another live process")
            await self.store.mark_doing(chunk, self.name)
            beat = heartbeat(self.store, chunk, self.name, self.settings.heartbeat_s)  # (results pages see it at work)
            await run_chunk(self.runtime, self.store, chunk, self.federation, self.settings.concurrency, beat)

    async def recover(self) -> int:
        """Hand back the chunk jobs of dead workers (see the module docstring); how many were."""
        manager = self.app.job_manager
        stalled_after = self.settings.stalled_after_s
        await manager.prune_stalled_workers(stalled_after)
        retried = 0
        for job in await manager.get_stalled_jobs(queue=QUEUE, task_name=CHUNK_TASK,
                                                  seconds_since_heartbeat=stalled_after):
            try:
                await manager.retry_job(job)
            except Exception as exc:  # another process retried it first
                log.info("batch_job_not_retried", job_id=job.id, error=type(exc).__name__)
                continue
            retried += 1
            log.warning("batch_job_recovered", job_id=job.id, batch_id=job.task_kwargs.get("batch_id"),
                        first=job.task_kwargs.get("first"))
        self.recovered += retried
        return retried

    async def _recovering(self) -> None:
        while True:
            try:
                await self.recover()
            except Exception:
                log.exception("batch_recovery_failed")
            await asyncio.sleep(self.settings.recover_every_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ProcrastinateEngine]:
        await ensure_procrastinate_schema(self.store.target)
        await self.app.open_async()
        tasks: list[asyncio.Task[Any]] = []
        try:
            if self.works:
                s = self.settings
                tasks.append(asyncio.create_task(self.app.run_worker_async(
                    queues=[QUEUE], name=self.name, concurrency=s.worker_concurrency, wait=True,
                    install_signal_handlers=False, delete_jobs="successful", shutdown_graceful_timeout=s.drain_s,
                    update_heartbeat_interval=s.heartbeat_s, stalled_worker_timeout=s.stalled_after_s,
                    fetch_job_polling_interval=min(5.0, s.heartbeat_s)), name="batch-worker"))
                tasks.append(asyncio.create_task(self._recovering(), name="batch-recovery"))
                log.info("batch_worker_started", worker=self.name, concurrency=s.worker_concurrency)
            yield self
        finally:
            for task in reversed(tasks):  # the recovery first, then the worker: it drains (up to drain_s), and
                await background.stop(task, grace_s=self.settings.drain_s + 5)  # a second cancel would cut it short
            await self.app.close_async()
