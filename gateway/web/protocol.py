"""What answers when aiohttp itself refuses a connection's bytes, before any request or middleware exists.

aiohttp's HTTP parser answers malformed requests (a bad method, a control character in a header, TLS on the
plain port, a line over its limits…) from ``RequestHandler.handle_error``: a ``text/plain`` body that quotes
the offending bytes back (header values included: whatever the sender put there, reflected), a ``Server``
header naming the Python and aiohttp versions, and a traceback at ERROR in the ``aiohttp.server`` log, again
with those bytes. Here that answer is ours instead:

- a problem document of our own words (``invalid_request`` for a 400, ``headers_too_large`` and 431 for a header
  line past the parser's field limit — as for any header over ``max_header_bytes`` —, ``internal_error`` for a
  500, …),
  never the request's bytes, ``Server: anss-gateway``, the connection closed (as aiohttp does);
- no traceback and no bytes in the log: ``http_request_unparsable`` with the status and the parser's error
  class, at most once a minute (with the count since the last line), so a flood of garbage cannot fill
  the log either;
- a count per status in ``ParserRefusals``, published by ``/readyz`` as ``unparsable_requests`` and by
  ``/metrics`` as ``anss_gateway_unparsable_requests_total{status}``.

Such a refusal is signed like every other answer (``X-JWS-Signature`` over its body, with the ``request_id`` of
its body, also sent as ``X-Request-Id``, and ``request_sha256`` over an empty ``jti`` and an empty body: no
request was read), but it is not an access-log entry: it carries no identity and reaches nothing
(docs/security.md, known limits). The app gives the signer (``REFUSAL_SIGNER``), so that a rotated key signs
from its first refusal on, and its checkpoint beacon, so that the refusal carries the ``Log-Checkpoint`` header
like every answer once there is a checkpoint.

aiohttp offers no public hook for this answer, so ``GatewayRunner`` builds its ``Server`` as ``AppRunner``
does and has it make ``GatewayProtocol`` connections; ``tests/gateway/test_hostile_callers.py`` pins the
behaviour, so an aiohttp upgrade that moves these seams fails there, not in production.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.crypto.jws import SIGNATURE_HEADER
from gateway.errors import (
    PROBLEM_CONTENT_TYPE,
    BadRequest,
    GatewayError,
    HeadersTooLarge,
    InternalError,
    ServiceUnavailable,
    problem_body,
)
from gateway.web.checkpoint import BEACON, CheckpointBeacon
from gateway.web.checkpoint import HEADER as CHECKPOINT_HEADER

__all__ = ["PARSER_REFUSALS", "REFUSAL_SIGNER", "GatewayProtocol", "GatewayRunner", "ParserRefusals", "RefusalSigner"]
log = structlog.get_logger("gateway")
SERVER = "anss-gateway"
MAX_REQUEST_LINE = 8190  # aiohttp's limit for the request line; its header-field limit is set larger (app.py)


@dataclass
class ParserRefusals:
    """How many connections the HTTP parser refused, by status, since this process started."""

    by_status: Counter[int] = field(default_factory=Counter)
    log_interval_s: float = 60.0
    _logged_at: float = -math.inf
    _since_logged: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def count(self, status: int, kind: str) -> None:
        self.by_status[status] += 1
        self._since_logged += 1
        now = time.monotonic()
        if now - self._logged_at >= self.log_interval_s:
            log.warning("http_request_unparsable", status=status, error=kind, count=self._since_logged,
                        total=self.total)
            self._logged_at, self._since_logged = now, 0


PARSER_REFUSALS: web.AppKey[ParserRefusals] = web.AppKey("parser_refusals", ParserRefusals)
RefusalSigner = Callable[[bytes, str], str]  # (body, request id) -> the X-JWS-Signature value
REFUSAL_SIGNER: web.AppKey[RefusalSigner] = web.AppKey("refusal_signer")


def _error_for(status: int, exc: BaseException | None = None) -> GatewayError:
    if isinstance(exc, LineTooLong) and len(exc.args) > 1 and isinstance(exc.args[1], int) \
            and exc.args[1] > MAX_REQUEST_LINE:  # a header line past the parser's own, larger, field limit
        return HeadersTooLarge("a request header is too large")
    if status == 500:
        return InternalError("the gateway could not process the request")
    if status in (503, 504):
        return ServiceUnavailable("the gateway could not answer in time")
    return BadRequest("the HTTP request could not be parsed")


class GatewayProtocol(RequestHandler):
    """aiohttp's connection handler, answering parser-level refusals as the module says."""

    __slots__ = ("beacon", "refusals", "sign")

    refusals: ParserRefusals
    sign: RefusalSigner | None
    beacon: CheckpointBeacon | None

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        error = _error_for(status, exc)
        if isinstance(error, HeadersTooLarge):  # (the parser says 400 for every line too long; a header's is 431)
            status = error.status
        self.refusals.count(status, type(exc).__name__ if exc is not None else "none")
        if request.writer.output_size > 0:  # part of an answer is out already: the connection is broken
            raise ConnectionError("response already started; no error answer can follow")
        request_id = uuid.uuid4().hex
        body = problem_body(error, request_id)
        headers = {"Server": SERVER, "X-Request-Id": request_id}
        if self.beacon is not None and self.beacon.header is not None:  # as on every answer (merkle-log.md §14)
            headers[CHECKPOINT_HEADER] = self.beacon.header
        if self.sign is not None:
            try:
                headers[SIGNATURE_HEADER] = self.sign(body, request_id)
            except Exception:  # (no key: the app is stopping) the refusal goes out unsigned rather than not at all
                log.warning("parser_refusal_unsigned")
        response = web.Response(body=body, status=status, content_type=PROBLEM_CONTENT_TYPE, headers=headers)
        response.force_close()
        return response


class _GatewayServer(web.Server):
    def __init__(self, *args: Any, refusals: ParserRefusals, sign: RefusalSigner | None,
                 beacon: CheckpointBeacon | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals = refusals
        self.sign = sign
        self.beacon = beacon

    def __call__(self) -> RequestHandler:
        protocol = GatewayProtocol(self, loop=self._loop, **self._kwargs)
        protocol.refusals = self.refusals
        protocol.sign = self.sign
        protocol.beacon = self.beacon
        return protocol


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are ``GatewayProtocol``; counts go to the app's ``PARSER_REFUSALS``,
    answers are signed by its ``REFUSAL_SIGNER`` (unsigned for an app that gives none)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        refusals = self.app.get(PARSER_REFUSALS)
        if refusals is None:
            refusals = ParserRefusals()
        return _GatewayServer(server.request_handler, request_factory=server.request_factory,
                              handler_cancellation=server.handler_cancellation, refusals=refusals,
                              sign=self.app.get(REFUSAL_SIGNER), beacon=self.app.get(BEACON), **server._kwargs)
