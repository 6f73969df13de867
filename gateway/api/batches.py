"""``/v1/batches``: population re-verification — submit, follow, read the results, cancel (docs/batches.md).

Signed like every client call; rights per purpose as for verifications, checked at submission (so a batch that
could never run is refused at once) and again for every subject. A batch is visible to the client that submitted
it only (404 to anyone else). The submission's own access-log entry holds the batch id and its size; each
subject's verification is an entry of its own (``gateway.batch.runner``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from gateway.api.caller import signed_request
from gateway.api.validation import refuse_unknown_query
from gateway.api.verifications import _as_of
from gateway.batch.runner import progress_document
from gateway.batch.service import BatchService
from gateway.batch.store import RUNNING
from gateway.citizen.labels import choose_language
from gateway.errors import BadRequest, NotFound, UnsupportedMediaType
from gateway.policy.rights import authorise
from gateway.trust.roles import DATA
from gateway.web.state import BATCHES

IDCS = re.compile(r"[0-9]{10}")
CIN = re.compile(r"[A-Z]{1,2}[0-9]{5,6}")
PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,47}")
RESULTS_PAGE = 10_000
UPLOAD_TYPES = ("application/x-ndjson", "application/jsonl")  # NDJSON, one subject per line (docs/batches.md)


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json",
                        headers=headers)


def parse_subjects(body: bytes, limit: int) -> list[dict[str, str]]:
    """One subject per line: ``{"idcs": "…"}`` or ``{"cin": "…"}``; blank lines are skipped. 400 naming the line,
    numbered as ``case_ref`` numbers subjects (from 1, blank lines not counted), with the file's own line number
    (blank lines counted) beside it when the two differ."""
    subjects: list[dict[str, str]] = []
    for physical, raw in enumerate(body.split(b"\n"), 1):
        if not raw.strip():
            continue
        number = len(subjects) + 1
        where = f"line {number}" if number == physical else f"line {number} (line {physical} of the file)"
        try:
            subject = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest(f"{where}: not a JSON object") from None
        if (not isinstance(subject, dict) or len(subject) != 1
                or not ((isinstance(subject.get("idcs"), str) and IDCS.fullmatch(subject["idcs"]))
                        or (isinstance(subject.get("cin"), str) and CIN.fullmatch(subject["cin"])))):
            raise BadRequest(f"{where}: a subject is {{\"idcs\": \"<10 digits>\"}} or "
                             "{\"cin\": \"<1–2 capital letters and 5–6 digits>\"}")
        subjects.append(subject)
        if len(subjects) > limit:
            raise BadRequest(f"a batch holds at most {limit} subjects")
    if not subjects:
        raise BadRequest("the upload holds no subject")
    return subjects


def refuse_cin_under_consent(subjects: list[dict[str, str]]) -> None:
    """A consent-based purpose looks the consent up by IDCS (as POST /v1/verifications): a CIN line is refused at
    submission, naming it, rather than becoming a failed line."""
    for number, subject in enumerate(subjects, 1):
        if "idcs" not in subject:
            raise BadRequest(f"line {number}: consent-based purposes take an IDCS subject ({{\"idcs\": …}}), "
                             "not a CIN")


async def _owned(request: web.Request, service: BatchService, client_id: str) -> Any:
    batch_id = request.match_info["batch_id"]
    progress = await service.store.progress(batch_id) if re.fullmatch(r"[0-9a-f]{32}", batch_id) else None
    if progress is None or progress.batch.client != client_id:
        raise NotFound(f"no batch {batch_id!r} of client {client_id!r}", "not_found")
    return progress


async def submit_batch(request: web.Request) -> web.Response:
    service = request.app[BATCHES]
    signed = await signed_request(request, DATA, service.max_upload_bytes)
    note, client_id, settings = signed.note, signed.caller.client_id, signed.runtime.settings
    if request.content_type not in UPLOAD_TYPES:
        raise UnsupportedMediaType("the upload must be NDJSON (Content-Type: application/x-ndjson, or its alias "
                                   "application/jsonl): one JSON subject per line")
    query = request.query
    refuse_unknown_query(request, frozenset({"purpose", "case_ref_prefix", "check", "as_of"}), frozenset({"check"}))
    purpose, prefix = query.get("purpose", ""), query.get("case_ref_prefix", "")
    if not purpose or not PREFIX.fullmatch(prefix):
        raise BadRequest("give purpose and case_ref_prefix (letters, digits and ._:/-, at most 48 characters)")
    note.purpose = purpose
    checks = query.getall("check", [])
    registry = settings.checks
    for check in checks:  # as POST /v1/verifications' schema does: an unknown check is a malformed request
        if check not in registry:
            raise BadRequest(f"check: must be one of {list(registry.names)}")
    decision = authorise(settings, client_id, purpose, checks or None)
    as_of = _as_of(query.get("as_of"))  # every subject verified as on that day, as POST /v1/verifications' as_of
    language = choose_language(request.headers.get("Accept-Language"))
    subjects = parse_subjects(signed.body, service.max_subjects)
    declared = settings.purposes.get(purpose)
    if declared is not None and declared.legal_basis == "consent":
        refuse_cin_under_consent(subjects)
    batch = await service.store.create(client_id, purpose, decision.checks, prefix, subjects, service.chunk_size,
                                       as_of=as_of.isoformat() if as_of else None, language=language)
    service.wake()
    note.checks, note.outcome = decision.checks, "batch_submitted"
    note.detail.update({"batch_id": batch.batch_id, "subjects": batch.total})
    progress = await service.store.progress(batch.batch_id)
    assert progress is not None
    return _json(progress_document(progress), 202, {"Location": f"/v1/batches/{batch.batch_id}"})


async def show_batch(request: web.Request) -> web.Response:
    service = request.app[BATCHES]
    signed = await signed_request(request, DATA)
    progress = await _owned(request, service, signed.caller.client_id)
    signed.note.detail["batch_id"] = progress.batch.batch_id
    signed.note.purpose, signed.note.outcome = progress.batch.purpose, "batch_shown"
    return _json(progress_document(progress))


async def batch_results(request: web.Request) -> web.Response:
    """A page of results as JSON Lines, by line number: ``after`` (default 0) and ``limit`` (≤ 10,000)."""
    service = request.app[BATCHES]
    signed = await signed_request(request, DATA)
    progress = await _owned(request, service, signed.caller.client_id)
    query = request.query
    refuse_unknown_query(request, frozenset({"after", "limit"}))
    after_text, limit_text = query.get("after", "0"), query.get("limit", str(RESULTS_PAGE))
    if not (DECIMAL.fullmatch(after_text) and DECIMAL.fullmatch(limit_text)):
        raise BadRequest("after and limit are integers, written in decimal digits alone")
    after, limit = int(after_text), int(limit_text)
    if after > MAX_LINE or not 1 <= limit <= RESULTS_PAGE:
        raise BadRequest(f"0 ≤ after ≤ {MAX_LINE}, and 1 ≤ limit ≤ {RESULTS_PAGE}")
    running = progress.batch.status == RUNNING  # read before the results: a batch seen running may end meanwhile
    # a cancelled batch settles: the group a chunk had in flight when it was cancelled still answers (its lines
    # may land below lines already answered), so until those chunks are done the page stops before them
    settling = None if running else await service.store.in_flight_from(progress.batch.batch_id,
                                                                       service.stalled_after_s)
    rows = await service.store.results(progress.batch.batch_id, after, limit)
    if running:  # lines are answered out of order while it runs: the page stops before the first one still missing,
        rows = contiguous(rows, after)  # so following X-Batch-Next-After never skips a line
    elif settling is not None:
        rows = [row for row in rows if row[0] < settling] if after < settling else contiguous(rows, after)
    running = running or settling is not None
    signed.note.detail.update({"batch_id": progress.batch.batch_id, "lines": len(rows)})
    signed.note.purpose, signed.note.outcome = progress.batch.purpose, "batch_results"
    headers = {"X-Batch-Status": progress.batch.status}
    if running or len(rows) == limit:  # more lines may follow: a full page, or a batch still at work
        headers["X-Batch-Next-After"] = str(rows[-1][0] if rows else after)
    body = b"".join(line + b"\n" for _, line in rows)
    return web.Response(body=body, content_type="application/x-ndjson", headers=headers)


DECIMAL = re.compile(r"[0-9]{1,19}")
MAX_LINE = 2**63 - 1  # a line number every store can hold


def contiguous(rows: list[tuple[int, bytes]], after: int) -> list[tuple[int, bytes]]:
    """The rows ``after + 1, after + 2, …`` up to the first line without a result."""
    for i, (line, _) in enumerate(rows):
        if line != after + 1 + i:
            return rows[:i]
    return rows


async def cancel_batch(request: web.Request) -> web.Response:
    service = request.app[BATCHES]
    signed = await signed_request(request, DATA)
    progress = await _owned(request, service, signed.caller.client_id)
    cancelled = progress.batch.status == RUNNING and await service.store.cancel(progress.batch.batch_id)
    signed.note.detail["batch_id"] = progress.batch.batch_id
    signed.note.purpose = progress.batch.purpose
    signed.note.outcome = "batch_cancelled" if cancelled else "batch_not_running"
    after_cancel = await service.store.progress(progress.batch.batch_id)
    assert after_cancel is not None
    return _json(progress_document(after_cancel))
