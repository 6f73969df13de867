"""Running batches: the chunk job, and the embedded engine that runs it inside the gateway process.

``run_chunk`` is the job: for each line of the chunk that has no result yet, one verification
(``gateway.federation.verify``) with ``case_ref`` = the batch's prefix + the line number, one access-log entry
(method ``BATCH``, path ``/v1/batches/<id>``, ``detail.batch_id`` and ``detail.line``), one signed result line.
A few lines run at once (``concurrency``); lines are claimed before they are verified and results are written
with ``ON CONFLICT DO NOTHING``, so a chunk run twice writes nothing twice. A claimed line with no result is one
a killed runner was working on: if the access log already holds its entry, the administrations were asked and
the access logged, but the answer was lost with the runner — its result says ``batch_interrupted`` (submit that
subject again) rather than asking a second time unlogged or logging it twice. Nothing is lost, nothing is
duplicated.

``EmbeddedEngine`` runs the job inside the gateway on its store (SQLite, or PostgreSQL with ``engine =
"embedded"``; ``gateway.batch.jobs`` runs the same job on procrastinate): it claims chunks one at a time,
heartbeats while working, and on start takes back chunks left ``doing`` by a previous process (their heartbeat
stops), so a batch resumes after a restart. Batch calls go through their own bulkheads (``batch_capacity``
calls in flight per administration, the breakers shared with the API), so interactive requests keep their
capacity.

Each result line is the JSON of the verification (or ``{"line", "case_ref", "error": {code, detail}}``) with a
``jws`` member: a detached JWS (RFC 7515, EdDSA/ES256, key from the gateway's JWKS) over the line's canonical
JSON without ``jws`` — sorted keys, no whitespace, UTF-8 — so each line verifies on its own (docs/batches.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from connectors.resilience import BulkheadSettings, Resilient
from gateway import background
from gateway.audit import AccessLogCorrupt, AccessRecord
from gateway.audit.query import LogQuery
from gateway.batch.store import RUNNING, Batch, BatchStore, Chunk, Progress
from gateway.crypto.jws import sign_detached
from gateway.errors import GatewayError
from gateway.federation.executor import Federation
from gateway.federation.verify import verify

if TYPE_CHECKING:
    from gateway.web.state import Runtime

log = structlog.get_logger(__name__)


def batch_federation(federation: Federation, capacity: int) -> Federation:
    """The same administrations and breakers, behind bulkheads of the batch's own."""
    guarded: dict[str, Any] = {}
    for name, connector in federation.connectors.items():
        if isinstance(connector, Resilient):
            own = Resilient(connector.inner, connector.breaker, BulkheadSettings(capacity, max_wait_s=30.0))
            own.observe, own.tracer = connector.observe, connector.tracer
            guarded[name] = own
        else:
            guarded[name] = connector
    return Federation(guarded, federation.checks)


def signed_line(runtime: Runtime, document: dict[str, Any], line_id: str) -> bytes:
    body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return orjson.dumps({**document, "jws": sign_detached(runtime.signing_key, body, line_id)},
                        option=orjson.OPT_SORT_KEYS)


async def _logged_before(runtime: Runtime, batch: Batch, line: int) -> bool:
    page = await runtime.access_log.search(LogQuery(client=batch.client, case_ref=f"{batch.case_ref_prefix}{line}",
                                                    limit=20))
    return any(hit.entry.get("detail", {}).get("batch_id") == batch.batch_id for hit in page.hits)


async def verify_line(runtime: Runtime, batch: Batch, line: int, subject: dict[str, str],
                      federation: Federation) -> tuple[bool, bytes]:
    from gateway.web.state import AuditNote

    note = AuditNote(client=batch.client)
    note.detail.update({"batch_id": batch.batch_id, "line": line})
    case_ref = f"{batch.case_ref_prefix}{line}"
    line_id = f"{batch.batch_id}:{line}"
    started = time.perf_counter()
    status, ok = 200, True
    try:
        document: dict[str, Any] = await verify(
            runtime, note, batch.client, batch.purpose, subject, list(batch.checks), case_ref, line_id, federation,
            as_of=date.fromisoformat(batch.as_of) if batch.as_of else None, language=batch.language)
        document = {"line": line, **document}
    except GatewayError as exc:
        status, ok = exc.status, False
        note.outcome = exc.code
        note.detail["reason"] = exc.detail
        document = {"line": line, "case_ref": case_ref, "error": {"code": exc.code, "detail": exc.detail}}
    result = signed_line(runtime, document, line_id)
    await runtime.access_log.append(AccessRecord(
        time=datetime.now(UTC).isoformat(timespec="microseconds"), request_id=line_id, method="BATCH",
        path=f"/v1/batches/{batch.batch_id}", status=status, outcome=note.outcome or "answered",
        latency_ms=round((time.perf_counter() - started) * 1000, 3), client=note.client, purpose=note.purpose,
        legal_basis=note.legal_basis, case_ref=case_ref, checks=note.checks, subject=note.subject,
        sources=note.sources, detail=note.detail, consent_id=note.consent_id,
        response_hmac=runtime.pseudonymiser.body_digest(result)))
    return ok, result


def heartbeat(store: BatchStore, chunk: Chunk, runner: str, every_s: float) -> Callable[[], Awaitable[None]]:
    """``run_chunk``'s ``on_progress``: the chunk's heartbeat in the store, at most every ``every_s`` seconds."""
    last = time.monotonic()

    async def beat() -> None:
        nonlocal last
        if time.monotonic() - last >= every_s:
            last = time.monotonic()
            await store.heartbeat(chunk, runner)

    return beat


async def run_chunk(runtime: Runtime, store: BatchStore, chunk: Chunk, federation: Federation,
                    concurrency: int = 8, on_progress: Any = None,
                    stopping: Callable[[], bool] | None = None) -> bool:
    """Verify the chunk's lines not yet answered, ``concurrency`` at a time; ``True`` once it is finished (or its
    batch no longer runs). When ``stopping()`` turns true, the group in flight ends and no further line is claimed:
    the chunk stays unfinished (``False``) and its unclaimed lines wait for the next runner, with nothing in doubt.

    A cancel takes effect at once: the batch's status is read again before each group, and a line is verified
    only if the store's claim succeeded — which it does not once the batch is cancelled (``claim_lines``), even
    on another worker. Only the group already in flight (at most ``concurrency`` lines) finishes."""
    batch = await store.get(chunk.batch_id)
    if batch is None or batch.status != RUNNING:
        return True
    todo = await store.todo(chunk)
    for start in range(0, len(todo), concurrency):
        if stopping is not None and stopping():
            return False
        if start:
            current = await store.get(chunk.batch_id)
            if current is None or current.status != RUNNING:  # cancelled: no further subject is started
                await store.finish_chunk(chunk, "")  # (nothing is at work on it any more: results pages settle)
                return True
        guard = runtime.log_guard
        if guard is not None and guard.corrupt is not None:  # no data leaves without a provable log
            raise AccessLogCorrupt("the access log is corrupt: batches wait")
        group = todo[start:start + concurrency]
        results: list[tuple[int, bool, bytes]] = []
        fresh = []
        for line, subject, claimed in group:
            if claimed and await _logged_before(runtime, batch, line):
                document = {"line": line, "case_ref": f"{batch.case_ref_prefix}{line}", "error": {
                    "code": "batch_interrupted",
                    "detail": "this subject was verified and logged, but its answer was lost when a worker stopped; "
                              "submit it again"}}
                results.append((line, False, signed_line(runtime, document, f"{batch.batch_id}:{line}")))
            else:
                fresh.append((line, subject))
        asked = [line for line, _ in fresh]
        taken = set(await store.claim_lines(batch.batch_id, asked)) if asked else set()
        fresh = [(line, subject) for line, subject in fresh if line in taken]
        answers = await asyncio.gather(*(verify_line(runtime, batch, line, subject, federation)
                                         for line, subject in fresh))
        results += [(line, ok, body) for (line, _), (ok, body) in zip(fresh, answers, strict=True)]
        await store.add_results(batch.batch_id, results)
        if runtime.metrics is not None:
            ok = sum(1 for _, line_ok, _ in results if line_ok)
            runtime.metrics.batch_subjects.labels("done").inc(ok)
            runtime.metrics.batch_subjects.labels("failed").inc(len(results) - ok)
        if on_progress is not None:
            await on_progress()
        if len(taken) < len(asked):  # the batch is no longer running (cancelled): its lines are not claimed
            await store.finish_chunk(chunk, "")
            return True
    await store.finish_chunk(chunk, "")
    return True


class EmbeddedEngine:
    """Batches inside the gateway process, on its store; resumes after a restart."""

    def __init__(self, runtime: Runtime, store: BatchStore, *, capacity: int = 8, concurrency: int = 8,
                 stalled_after_s: float = 30.0, heartbeat_s: float = 5.0, poll_s: float = 0.5,
                 drain_s: float = 30.0) -> None:
        self.runtime, self.store = runtime, store
        self.runner_id = f"embedded-{uuid.uuid4().hex[:12]}"
        self.federation = batch_federation(runtime.federation, capacity)
        self.concurrency, self.stalled_after_s = concurrency, stalled_after_s
        self.heartbeat_s, self.poll_s, self.drain_s = heartbeat_s, poll_s, drain_s
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """A new batch is waiting."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            chunk = await self.store.claim_chunk(self.runner_id, self.stalled_after_s)
            if chunk is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                continue
            beat = heartbeat(self.store, chunk, self.runner_id, self.heartbeat_s)
            try:
                await run_chunk(self.runtime, self.store, chunk, self.federation, self.concurrency, beat,
                                stopping=lambda: self._stopping)
            except asyncio.CancelledError:
                raise
            except Exception:  # the chunk stays "doing": taken back once its heartbeat is stale
                log.exception("batch_chunk_failed", batch_id=chunk.batch_id, first=chunk.first)
                await asyncio.sleep(self.poll_s)

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        task = asyncio.create_task(self.run(), name="batches")
        try:
            yield self
        finally:
            # a clean stop drains: the lines in flight finish (up to drain_s), none is claimed after them, so a
            # restart resumes with nothing in doubt; only what is still running after drain_s is cut short
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self.drain_s)
            with contextlib.suppress(Exception):
                await background.stop(task)
            with contextlib.suppress(Exception):
                await self.store.release_all(self.runner_id)


def progress_rate(progress: Progress, now: float | None = None) -> float | None:
    """Subjects answered per second since the batch started working: ``(done + failed) / (end − start)``, where
    start is when a runner first claimed one of its chunks (``created_at`` for a batch stored before that was
    kept) and end is now while it runs, else the time of its last result. ``None`` before any result."""
    batch = progress.batch
    finished = progress.done + progress.failed
    if not finished:
        return None
    start = batch.started_at if batch.started_at is not None else batch.created_at
    if batch.status == RUNNING:
        end = max(time.time() if now is None else now, progress.last_result_at or 0.0)
    else:
        end = progress.last_result_at or batch.finished_at or start
    return finished / max(end - start, 0.001)


def progress_document(progress: Progress, now: float | None = None) -> Mapping[str, Any]:
    """The batch document (schemas/batch.json): counts, rate and ETA (``pending / rate_per_s`` while running)."""
    batch = progress.batch
    rate = progress_rate(progress, now)
    return {
        "batch_id": batch.batch_id, "status": batch.status, "purpose": batch.purpose, "checks": list(batch.checks),
        "case_ref_prefix": batch.case_ref_prefix, "as_of": batch.as_of, "language": batch.language,
        "total": batch.total, "done": progress.done,
        "failed": progress.failed, "pending": progress.pending, "dropped": progress.dropped,
        "rate_per_s": None if rate is None else round(rate, 2),
        "eta_s": None if rate is None or batch.status != RUNNING else round(progress.pending / rate, 1),
        "created_at": datetime.fromtimestamp(batch.created_at, UTC).isoformat(timespec="seconds"),
        "finished_at": None if batch.finished_at is None else datetime.fromtimestamp(batch.finished_at, UTC
                                                                                      ).isoformat(timespec="seconds"),
    }
