"""The JSON/REST server core the REST simulators share: the signature check, the test controls (``rogue``
answers come from ``simulators.rogue``) and JSON errors for every refusal (aiohttp's own 404/405
included)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from simulators import rogue
from simulators.common import CONTEXT, OutboundAuthError, check_signature

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error body every REST simulator answers with: ``{"error": ..., "message": ...}``."""
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


@web.middleware
async def rest_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    control = ctx.control
    control.calls += 1
    try:
        await check_signature(request, await request.read())
    except OutboundAuthError:
        return json_error(401, "unauthorized", "the call is not signed for this administration",
                          headers={"WWW-Authenticate": "Bearer"})
    with control.track():
        if control.delay_s > 0:
            await asyncio.sleep(control.delay_s)
        if control.fail:
            return json_error(503, "unavailable", "the service is temporarily unavailable")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = "not_found" if exc.status == 404 else "bad_request" if exc.status < 500 else "server_error"
            return json_error(exc.status, error, exc.reason)
        # a rogue administration misbehaves instead of giving its answer (found or not found)
        if control.rogue is not None and isinstance(response, web.Response) and response.status in (200, 404):
            return await rogue.rest_reply(request, control, control.rogue, response)
        return response
