"""``GET /v1/citizen/access-log``: a citizen sees who accessed their data (docs/citizens.md).

The citizen is authenticated by a token of the configured identity provider (``gateway.citizen.token``),
never by a client assertion. The gateway computes the pseudonyms of the token's IDCS (and CIN, if any)
exactly as the verification path does for a subject, searches the access log for them, and shows only the
entries ``gateway.citizen.view`` allows, newest first, ``limit`` at a time (``cursor`` to go on).

The read itself is one access-log entry, like every request: client ``citizen``, the IDCS pseudonym as
subject, outcome ``citizen_access_log_read`` — never the identifiers. A refused token is logged too (with
its reason, without a subject: an invalid token names nobody).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from gateway.audit.query import LogHit, cursor_given
from gateway.audit.record import CITIZEN_ACTOR
from gateway.citizen import devidp
from gateway.citizen.jwks import JwksError, JwksFile
from gateway.citizen.labels import choose_language
from gateway.citizen.pages import collect
from gateway.citizen.token import CitizenTokenVerifier
from gateway.citizen.view import Viewer, classify
from gateway.config.settings import ConfigError, Settings
from gateway.errors import BadRequest, ServiceUnavailable, TooManyRequests
from gateway.policy.consent.store import Consent
from gateway.trust.ratelimit import Limit
from gateway.trust.ratelimit import headers as rate_headers
from gateway.web.state import AUDIT_NOTE, RUNTIME, AuditNote, Runtime

log = structlog.get_logger(__name__)

PATH = "/v1/citizen/access-log"
ACTOR = CITIZEN_ACTOR  # the access log's `client` for a citizen's own request
OUTCOME = "citizen_access_log_read"
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
NUMBER = re.compile(r"[1-9][0-9]{0,17}")  # below 2^63: an index of the log
CITIZEN_TOKENS: web.AppKey[CitizenTokenVerifier] = web.AppKey("citizen_tokens", CitizenTokenVerifier)


def _open_keys(settings: Settings) -> JwksFile:
    """The identity provider's keys; with no ``jwks_file``, the dev provider's (made on first start)."""
    if devidp.uses_dev_provider(settings):
        devidp.ensure(settings.state_dir)
        log.warning("citizen_dev_identity_provider", detail="citizens' tokens are checked against the dev "
                    "identity provider's keys: set [citizens] jwks_file in production")
    path = devidp.jwks_path(settings)
    keys = JwksFile(path, settings.citizens.algorithms)
    try:
        keys.load()
    except (OSError, JwksError) as exc:
        raise ConfigError(f"{settings.citizens.jwks_setting}: {path}: {exc}") from exc
    return keys


def context(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def citizen_ctx(app: web.Application) -> AsyncIterator[None]:
        keys = await asyncio.to_thread(_open_keys, settings)
        app[CITIZEN_TOKENS] = CitizenTokenVerifier(settings.citizens, keys)
        yield

    return citizen_ctx


def _query(request: web.Request) -> tuple[int, int | None]:
    query = request.query
    unknown = sorted(set(query) - {"limit", "cursor"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}; known: limit, cursor")
    for name in query:
        if len(query.getall(name)) > 1:
            raise BadRequest(f"give `{name}` at most once")
    limit = DEFAULT_LIMIT
    if "limit" in query:
        if not NUMBER.fullmatch(query["limit"]) or not 1 <= int(query["limit"]) <= MAX_LIMIT:
            raise BadRequest(f"`limit` must be an integer from 1 to {MAX_LIMIT}")
        limit = int(query["limit"])
    cursor = None
    if "cursor" in query:
        if not NUMBER.fullmatch(query["cursor"]):
            raise BadRequest("`cursor` must be a `next_cursor` given by a previous page")
        cursor = int(query["cursor"])
    return limit, cursor


async def _admit(runtime: Runtime, pseudonym: str) -> None:
    """Each citizen has their own budget (the gateway's default rate); a limiter that cannot answer lets
    the request through, as for clients."""
    bucket = runtime.settings.default_rate_limit
    try:
        decision = await runtime.limiter.take(f"{ACTOR}:{pseudonym}", Limit(bucket.rate_per_s, bucket.burst))
    except Exception as exc:
        log.error("rate_limiter_unavailable", error=type(exc).__name__)
        return
    if not decision.allowed:
        raise TooManyRequests("too many reads of your access log; retry after the delay given",
                              headers=rate_headers(decision))


async def _consents(runtime: Runtime, hits: list[LogHit]) -> dict[str, Consent]:
    ids = dict.fromkeys(h.entry["consent_id"] for h in hits if isinstance(h.entry.get("consent_id"), str))
    found: dict[str, Consent] = {}
    try:
        for consent_id in ids:
            consent = await runtime.consents.get(consent_id)
            if consent is not None:
                found[consent_id] = consent
    except Exception as exc:
        log.error("consent_store_unavailable", error=type(exc).__name__)
        raise ServiceUnavailable("the consent registry is unavailable, so nothing is answered") from exc
    return found


async def access_log(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    note: AuditNote = request[AUDIT_NOTE]
    note.client = ACTOR
    citizen = await request.app[CITIZEN_TOKENS].verify(request.headers.getall("Authorization", []))
    pseudonyms = [runtime.pseudonymiser.pseudonym("idcs", citizen.idcs)]
    if citizen.cin is not None:
        pseudonyms.append(runtime.pseudonymiser.pseudonym("cin", citizen.cin))
    note.subject = pseudonyms[0]
    limit, cursor = _query(request)
    await _admit(runtime, pseudonyms[0])
    language = choose_language(request.headers.get("Accept-Language"))
    try:
        given = cursor is None or cursor_given(cursor, await runtime.access_log.count())
        page = None if not given else await collect(
            runtime.access_log, pseudonyms, lambda hit: classify(hit.entry, pseudonyms) is not None, limit, cursor,
            persons=pseudonyms[:1])  # co-subjects are named by their IDCS
    except Exception as exc:
        log.error("access_log_unreadable", error=type(exc).__name__)
        raise ServiceUnavailable("the access log cannot be read now", "audit_unavailable") from exc
    if page is None:
        raise BadRequest("`cursor` must be a `next_cursor` given by a previous page")
    viewer = Viewer(runtime.settings, frozenset(pseudonyms), language, await _consents(runtime, page.hits))
    entries = [shown for hit in page.hits if (shown := viewer.show(hit.entry)) is not None]
    note.outcome = OUTCOME
    note.detail["shown"] = len(entries)
    document: dict[str, Any] = {
        "language": language,
        "entries": entries,
        "next_cursor": str(page.next_cursor) if page.next_cursor is not None else None,
    }
    return web.Response(body=orjson.dumps(document), content_type="application/json", headers={
        "Cache-Control": "no-store", "Content-Language": language, "Vary": "Authorization, Accept-Language"})
