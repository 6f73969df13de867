"""``POST /v1/verifications``: authenticate, parse, then one verification (``gateway.federation.verify``)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import orjson
from aiohttp import web

from gateway.api.caller import signed_request
from gateway.api.validation import parse_json
from gateway.citizen.labels import choose_language
from gateway.errors import BadRequest
from gateway.federation.verify import verify
from gateway.trust.roles import DATA
from gateway.web.state import REQUEST_ID


async def create_verification(request: web.Request) -> web.Response:
    signed = await signed_request(request, DATA)  # officers read the log; they never query citizen data
    payload = parse_json(signed.body, request.content_type, "verification-request.json",
                         signed.runtime.settings.checks)
    as_of = _as_of(payload.get("as_of"))
    language = choose_language(request.headers.get("Accept-Language"))
    document = await verify(signed.runtime, signed.note, signed.caller.client_id, payload["purpose"],
                            payload["subject"], payload.get("checks"), payload["case_ref"], request[REQUEST_ID],
                            as_of=as_of, language=language)
    response = web.Response(body=orjson.dumps(document), content_type="application/json")
    response.headers["Content-Language"] = language
    response.headers["Vary"] = "Accept-Language"
    return response


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _as_of(requested: str | None) -> date | None:
    """An earlier date to verify as on (retroactive checks), or None for today; never in the future."""
    if requested is None:
        return None
    try:  # exactly YYYY-MM-DD: fromisoformat alone also takes 20251201 and week dates (2025-W49-1)
        if not _ISO_DAY.fullmatch(requested):
            raise ValueError(requested)
        day = date.fromisoformat(requested)
    except ValueError:
        raise BadRequest(f"as_of {requested!r} is not a date (YYYY-MM-DD)", "invalid_request") from None
    if day > datetime.now(UTC).date():
        raise BadRequest(f"as_of {requested} is in the future; a verification looks at today or the past",
                         "invalid_request")
    return day
