"""``POST /v1/verifications``: authenticate, parse, then one verification (``gateway.federation.verify``)."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.api.caller import signed_request
from gateway.api.validation import parse_json
from gateway.federation.verify import verify
from gateway.trust.roles import DATA
from gateway.web.state import REQUEST_ID


async def create_verification(request: web.Request) -> web.Response:
    signed = await signed_request(request, DATA)  # officers read the log; they never query citizen data
    payload = parse_json(signed.body, request.content_type, "verification-request.json",
                         signed.runtime.settings.checks)
    document = await verify(signed.runtime, signed.note, signed.caller.client_id, payload["purpose"],
                            payload["subject"], payload.get("checks"), payload["case_ref"], request[REQUEST_ID])
    return web.Response(body=orjson.dumps(document), content_type="application/json")
