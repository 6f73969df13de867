"""``/v1/audit/...``: the security officers' API over the access log (docs/officers.md).

Same trust path as every client — a signed client assertion, once, within the rate limit — then the caller
must be an officer (``require_role``), else 403 ``forbidden_role``. Every request is itself an access-log entry
(the pipeline writes it) with the officer as client and what was asked in ``detail``:

* ``POST /v1/audit/search`` — filters in a JSON body (a citizen is named by IDCS or CIN, which the gateway turns
  into the stored pseudonym: the identifier is never stored, logged or put in a URL), newest first, a page at
  a time with an opaque cursor. Logged: ``audit_searched``, the filters (the subject as its pseudonym), hits.
* ``GET /v1/audit/entries/{index}`` — the entry's bytes, its leaf hash and its inclusion proof against the latest
  signed tree head (with that head), or a plain statement that no signed head covers it yet.
* ``GET /v1/audit/integrity`` — size, latest signed head and the last verification; ``POST /v1/audit/verify``
  runs one now. Its result is recorded in the verification's own access-log entry (outcome
  ``audit_verification``), which is where the integrity panel reads it back: every replica sees it, and it is
  as tamper-evident as the rest of the log.
* ``GET /v1/audit/export`` — the JSON Lines export of docs/merkle-log.md section 6, after signing a head for the
  current size, answered whole up to ``[audit] export_max_bytes`` (else 422 ``export_too_large``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import web

from gateway.api.caller import signed_request
from gateway.api.validation import parse_json, refuse_unknown_query
from gateway.audit import log_id_for, tree_head_keys
from gateway.audit.merkle import MAX_SIZE, SignedTreeHead
from gateway.audit.query import LogPage, LogQuery, cursor_given
from gateway.audit.store import AccessLog
from gateway.crypto.keys import PublicKey, b64url
from gateway.errors import BadRequest, GatewayError, NotFound, ServiceUnavailable
from gateway.trust.roles import OFFICER
from gateway.web.heavy import heavy_read
from gateway.web.state import AuditNote, Runtime

log = structlog.get_logger(__name__)
T = TypeVar("T")
CURSOR_VERSION = b"\x01"
VERIFICATION = "audit_verification"  # the outcome of a verify-now entry: the integrity panel reads it back
VERIFY_PATH = "/v1/audit/verify"
VERIFY_PATHS = frozenset({VERIFY_PATH, "/console/integrity/verify"})  # where officers run a full verification
FILTERS = ("client", "purpose", "case_ref", "outcome", "check", "source")


class ExportTooLarge(GatewayError):
    default_code = "export_too_large"

    @classmethod
    def of(cls, limit: int) -> ExportTooLarge:
        return cls(f"the export is larger than the {limit} bytes this API answers ([audit] export_max_bytes); "
                   "export the log on the gateway host with `anss-gateway audit export`")


async def _officer(request: web.Request) -> tuple[Runtime, AuditNote, bytes]:
    """Authenticate and admit the request; refuse anyone but an officer."""
    signed = await signed_request(request, OFFICER)
    return signed.runtime, signed.note, signed.body


async def _reading(call: Awaitable[T]) -> T:
    """An access-log read; a log that cannot answer is a 503 (never a partial answer)."""
    try:
        return await call
    except (GatewayError, IndexError, ValueError):
        raise
    except Exception as exc:
        log.error("access_log_read_failed", error=type(exc).__name__)
        raise ServiceUnavailable("the access log cannot be read now", "audit_unavailable") from exc


def _json(document: Any) -> web.Response:
    return web.Response(body=orjson.dumps(document), content_type="application/json")


def _no_body(request: web.Request, body: bytes) -> None:
    if body:
        raise BadRequest(f"{request.method} {request.path} takes no body")


async def check_cursor(access_log: AccessLog, cursor: int | None) -> None:
    """400 for a cursor no page of this log gave (``cursor_given``)."""
    if cursor is not None and not cursor_given(cursor, await _reading(access_log.count())):
        raise BadRequest("/cursor: is not a cursor this gateway gave")


def _head(signed: SignedTreeHead | None) -> dict[str, Any] | None:
    if signed is None:
        return None
    h = signed.head
    return {"tree_size": h.tree_size, "root_hash": b64url(h.root_hash), "timestamp_ms": h.timestamp_ms,
            "log_id": h.log_id, "signature": signed.signature}


# --- cursors -------------------------------------------------------------------------------------------------------


def encode_cursor(index: int | None) -> str | None:
    """Opaque to callers: a version byte and the index to continue below, base64url."""
    if index is None:
        return None
    return base64.urlsafe_b64encode(CURSOR_VERSION + index.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise BadRequest("/cursor: is not a cursor this gateway gave") from exc
    if len(raw) != 9 or raw[:1] != CURSOR_VERSION or encode_cursor(int.from_bytes(raw[1:], "big")) != text \
            or raw[1] >= 0x80:  # an index is below 2**63 in every store
        raise BadRequest("/cursor: is not a cursor this gateway gave")
    return int.from_bytes(raw[1:], "big")


# --- search --------------------------------------------------------------------------------------------------------


def _time(payload: dict[str, Any], name: str) -> datetime | None:
    if name not in payload:
        return None
    try:  # the schema's pattern checks the shape (RFC 3339 with a zone), not the values
        return datetime.fromisoformat(payload[name].upper()).astimezone(UTC)  # (RFC 3339 allows "t" and "z")
    except (ValueError, OverflowError) as exc:  # month 13, year 0001 with an offset...
        raise BadRequest(f"/{name}: is not an RFC 3339 date-time") from exc


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def build_query(runtime: Runtime, payload: dict[str, Any]) -> tuple[LogQuery, dict[str, Any]]:
    """The store query of a search body, and the filters as logged (the subject as its pseudonym only)."""
    for name in FILTERS:  # JSON can carry lone surrogates: no entry holds one, and no entry may log one
        if name in payload and not _encodable(payload[name]):
            raise BadRequest(f"/{name}: is not valid Unicode text")
    since, until = _time(payload, "since"), _time(payload, "until")
    if since is not None and until is not None and until <= since:
        raise BadRequest("/until: must be after since")
    logged: dict[str, Any] = {name: payload[name] for name in FILTERS if name in payload}
    pseudonyms: dict[str, str | None] = {"subject": None, "co_subject": None}
    for member in pseudonyms:  # a citizen by IDCS or CIN: only the pseudonym is searched for, and logged
        if member in payload:
            kind, identifier = next(iter(payload[member].items()))
            pseudonyms[member] = logged[member] = runtime.pseudonymiser.pseudonym(kind, identifier)
            logged[f"{member}_kind"] = kind
    cursor = decode_cursor(payload["cursor"]) if "cursor" in payload else None
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            logged[name] = moment.isoformat(timespec="microseconds")
    logged["limit"] = int(payload.get("limit", 50))  # JSON Schema takes 20.0 for an integer
    if cursor is not None:
        logged["cursor"] = cursor
    filters: dict[str, Any] = {name: payload.get(name) for name in FILTERS}
    query = LogQuery(since=since, until=until, subject=pseudonyms["subject"], person=pseudonyms["co_subject"],
                     limit=logged["limit"], cursor=cursor, **filters)
    return query, logged


async def search_entries(request: web.Request) -> web.Response:
    runtime, note, body = await _officer(request)
    refuse_unknown_query(request)  # the filters go in the body, never in the URL (officers.md section 2)
    payload = parse_json(body, request.content_type, "audit-search-request.json", runtime.settings.checks)
    query, logged = build_query(runtime, payload)
    await check_cursor(runtime.access_log, query.cursor)
    note.detail["filters"] = logged
    # an officer looking a citizen up is itself an access about that citizen (the citizen's own page shows it)
    note.subject = query.subject or query.person
    if query.subject is not None and query.person is not None:
        note.co_subjects = (query.person,)
    async with heavy_read(runtime):
        page: LogPage = await _reading(runtime.access_log.search(query))
    note.outcome = "audit_searched"
    note.detail["hits"] = len(page.hits)
    note.detail["more"] = page.next_cursor is not None
    return _json({"entries": [{"index": h.index, "entry": h.entry} for h in page.hits],
                  "next_cursor": encode_cursor(page.next_cursor)})


# --- one entry -----------------------------------------------------------------------------------------------------


async def entry_detail(access_log: AccessLog, index: int, interval_s: float) -> dict[str, Any]:
    """An entry with its leaf hash and inclusion proof against the latest signed head (``NotFound`` if none)."""
    if index >= await _reading(access_log.count()):
        raise NotFound(f"the access log has no entry {index}")
    entry = await _reading(access_log.entry(index))
    leaf = (await _reading(access_log.leaf_hashes(index, index + 1)))[0]
    head = await _reading(access_log.latest_tree_head())
    document: dict[str, Any] = {
        "index": index, "pruned": entry is None, "entry": orjson.loads(entry) if entry is not None else None,
        "entry_bytes": b64url(entry) if entry is not None else None, "leaf_hash": b64url(leaf),
    }
    if head is not None and head.head.tree_size > index:
        proof = await _reading(access_log.inclusion_proof(index, head.head.tree_size))
        document["inclusion"] = {"tree_size": head.head.tree_size, "proof": [b64url(p) for p in proof],
                                 "tree_head": _head(head)}
        document["covered"] = True
        document["explanation"] = (f"entry {index} is covered by the signed tree head of size "
                                   f"{head.head.tree_size}: its inclusion proof verifies against that head's root")
    else:
        document["inclusion"] = None
        document["covered"] = False
        document["explanation"] = (f"no signed tree head covers entry {index} yet; the gateway signs one within "
                                   f"{interval_s:g} s, then this entry can be proven included")
    return document


async def show_entry(request: web.Request) -> web.Response:
    runtime, note, body = await _officer(request)
    refuse_unknown_query(request)
    _no_body(request, body)
    raw = request.match_info["index"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_SIZE
            and (raw == "0" or not raw.startswith("0"))):  # one spelling per entry, as /log/consistency's sizes
        raise BadRequest(f"an entry index is an integer from 0 to {MAX_SIZE}, without leading zeros")
    index = int(raw)
    note.detail["index"] = index
    async with heavy_read(runtime):
        document = await entry_detail(runtime.access_log, index, runtime.settings.tree_head_interval_s)
    note.outcome = "audit_entry_shown"
    return _json(document)


# --- integrity -----------------------------------------------------------------------------------------------------


async def last_verification(access_log: AccessLog) -> dict[str, Any] | None:
    """The newest verify-now result (API or console), read back from its own access-log entry (any replica wrote
    it)."""
    cursor = None
    for _ in range(5):  # a handful of pages: only the two verify handlers give this outcome
        page = await _reading(access_log.search(LogQuery(outcome=VERIFICATION, limit=20, cursor=cursor)))
        for hit in page.hits:
            e, d = hit.entry, hit.entry.get("detail") or {}
            if e.get("path") in VERIFY_PATHS and e.get("status") == 200 and d.get("result") in ("intact", "broken"):
                return {"result": d["result"], "first_bad_index": d.get("first_bad_index"),
                        "reason": d.get("reason"), "entries": d.get("entries", 0), "tree_size": d.get("tree_size"),
                        "duration_ms": d.get("duration_ms", 0.0), "verified_at": e.get("time"),
                        "verified_by": e.get("client"), "entry_index": hit.index}
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor
    return None


async def integrity(request: web.Request) -> web.Response:
    runtime, note, body = await _officer(request)
    refuse_unknown_query(request)
    _no_body(request, body)
    access_log, settings = runtime.access_log, runtime.settings
    async with heavy_read(runtime):
        count = await _reading(access_log.count())
        head = await _reading(access_log.latest_tree_head())
        last = await last_verification(access_log)
    note.outcome = "audit_integrity_shown"
    return _json({
        "log_id": log_id_for(settings.gateway_id), "entries": count, "latest_tree_head": _head(head),
        "unsigned_entries": count - (head.head.tree_size if head else 0),
        "tree_head_interval_s": settings.tree_head_interval_s,
        "tree_head_max_entries": settings.tree_head_max_entries,
        "last_verification": last,
    })


async def trusted_head_keys(runtime: Runtime) -> dict[str, PublicKey]:
    """Every key that ever signed one of this log's tree heads, and the keys published now."""
    stored = await asyncio.to_thread(tree_head_keys, runtime.settings)
    return stored | {key.kid: key.public for key in runtime.published_keys}


async def full_verification(runtime: Runtime) -> dict[str, Any]:
    """Verify the whole log now (as ``anss-gateway audit verify``): the result officers record, from the API or
    the console, and read back as the last verification."""
    access_log = runtime.access_log
    trusted = await trusted_head_keys(runtime)
    count = await access_log.count()
    head = await access_log.latest_tree_head()
    started = time.perf_counter()
    problem = await access_log.verify(trusted)
    if problem is not None:
        log.error("access_log_verification_failed", index=problem.index, reason=problem.reason)
    return {
        "result": "intact" if problem is None else "broken",
        "first_bad_index": problem.index if problem else None, "reason": problem.reason if problem else None,
        "entries": count, "tree_size": head.head.tree_size if head else None,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }


async def verify_now(request: web.Request) -> web.Response:
    runtime, note, body = await _officer(request)
    refuse_unknown_query(request)
    if body:
        raise BadRequest("POST /v1/audit/verify takes no body")
    async with heavy_read(runtime):
        result = await _reading(full_verification(runtime))
    note.outcome = VERIFICATION
    note.detail.update(result)  # the record the integrity panel reads back, in the tree like every entry
    note.time = datetime.now(UTC).isoformat(timespec="microseconds")  # the entry's time: the panel's verified_at
    return _json({**result, "verified_at": note.time, "verified_by": note.client})


# --- export --------------------------------------------------------------------------------------------------------


class _Capped(io.StringIO):
    """Collects the export, refusing to grow past ``limit`` characters (written from the store's thread, so a
    too large export stops early; the handler checks the bytes at the end)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > self.limit:
            raise ExportTooLarge.of(self.limit)
        return super().write(text)


async def export(request: web.Request) -> web.Response:
    runtime, note, body = await _officer(request)
    refuse_unknown_query(request, frozenset({"proofs"}))
    _no_body(request, body)
    proofs_text = request.query.get("proofs", "true")
    if proofs_text not in ("true", "false"):
        raise BadRequest("proofs: must be true or false")
    proofs = proofs_text == "true"
    settings, access_log = runtime.settings, runtime.access_log
    log_id = log_id_for(settings.gateway_id)
    out = _Capped(settings.audit_export_max_bytes)
    try:  # cover the tail first: the export ends at the latest signed head
        async with heavy_read(runtime):
            await access_log.issue_tree_head(runtime.signing_key, log_id)
            head = await access_log.export(out, inclusion_proofs=proofs, consistency_proofs=proofs)
    except GatewayError:
        raise
    except Exception as exc:  # e.g. AccessLogCorrupt: the stored tree does not add up
        log.error("access_log_export_failed", error=f"{type(exc).__name__}: {exc}")
        raise ServiceUnavailable("the access log cannot be exported now", "audit_unavailable") from exc
    body = out.getvalue().encode("utf-8")
    if len(body) > settings.audit_export_max_bytes:  # characters were counted; UTF-8 may take more bytes
        raise ExportTooLarge.of(settings.audit_export_max_bytes)
    note.outcome = "audit_exported"
    note.detail.update({"tree_size": head.head.tree_size, "bytes": len(body), "proofs": proofs})
    filename = f"{log_id}-{head.head.tree_size}.jsonl"
    return web.Response(body=body, content_type="application/x-ndjson", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
