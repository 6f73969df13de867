"""The log's public, personal-data-free resources: ``GET /log/checkpoint`` (the latest checkpoint, a C2SP
signed note) and ``GET /log/consistency?from=M&to=N`` (an RFC 9162 consistency proof between two tree sizes).

No authentication: they hold hashes and signatures, nothing about anyone, so any client, monitor or auditor may
check that the log it was shown only ever grew (docs/merkle-log.md section 14). They are not recorded in the
access log (like the published schemas), and each source address (an IPv6 address by its /64) has a token
bucket of ``[rate_limits]``'s default rate and burst; beyond it 429 ``rate_limited``.
"""

from __future__ import annotations

import base64
import re

import orjson
import structlog
from aiohttp import web

from gateway.api.validation import refuse_unknown_query
from gateway.errors import BadRequest, NotFound, TooManyRequests
from gateway.trust.ratelimit import Limit
from gateway.trust.ratelimit import headers as rate_headers
from gateway.trust.refusals import address_of
from gateway.web.checkpoint import BEACON
from gateway.web.state import RUNTIME

log = structlog.get_logger("gateway.api")
PREFIX = "/log/"
MAX_SIZE = 2**63 - 1
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


async def _limit(request: web.Request) -> None:
    runtime = request.app[RUNTIME]
    bucket = runtime.settings.default_rate_limit
    key = "log:" + runtime.pseudonymiser.pseudonym("address", address_of(request.remote))
    try:
        decision = await runtime.limiter.take(key, Limit(bucket.rate_per_s, bucket.burst))
    except Exception as exc:  # an unreachable limiter does not close a public, read-only resource
        log.error("rate_limiter_unavailable", error=type(exc).__name__)
        return
    if not decision.allowed:
        raise TooManyRequests(f"at most {bucket.burst} requests at once and {bucket.rate_per_s:g}/s per address; "
                              "retry after the delay given", headers=rate_headers(decision))


def _size(request: web.Request, name: str, default: int | None) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise BadRequest(f"give `{name}`, a tree size", "invalid_tree_size")
        return default
    if not _SIZE.fullmatch(text) or int(text) > MAX_SIZE:
        raise BadRequest(f"`{name}` must be a tree size: a decimal integer from 0 to 2^63-1, no sign or leading "
                         "zero", "invalid_tree_size")
    return int(text)


async def checkpoint(request: web.Request) -> web.Response:
    """The latest checkpoint, as ``text/plain`` (the note's exact bytes)."""
    await _limit(request)
    note = request.app[BEACON].note
    if note is None:
        raise NotFound("the log has no checkpoint yet")
    return web.Response(text=note, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def consistency(request: web.Request) -> web.Response:
    """``{"from": M, "to": N, "proof": [...]}``: ``PROOF(M, D[N])``, hashes in padded standard base64."""
    await _limit(request)
    refuse_unknown_query(request, frozenset({"from", "to"}))
    beacon = request.app[BEACON]
    old = _size(request, "from", None)
    new = _size(request, "to", beacon.size if beacon.size >= 0 else None)
    if old > new:
        raise BadRequest(f"`from` ({old}) must not be larger than `to` ({new})", "invalid_tree_size")
    access_log = request.app[RUNTIME].access_log
    count = await access_log.count()
    if new > count:
        raise BadRequest(f"the log holds {count} entries: there is no tree of size {new}", "tree_size_beyond_log")
    proof = await access_log.consistency_proof(old, new)
    document = {"from": old, "to": new, "proof": [base64.b64encode(h).decode("ascii") for h in proof]}
    return web.Response(body=orjson.dumps(document), content_type="application/json")
