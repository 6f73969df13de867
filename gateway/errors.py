"""The gateway's error hierarchy and its one mapping to RFC 9457 ``application/problem+json``.

Every refusal is a ``GatewayError`` whose ``code`` is listed in ``schemas/errors.json`` (the catalogue
clients rely on). ``problem_body`` is the only place that turns an error into bytes; the detail is our
own text, never a backend's message or a stack trace::

    GatewayError
     ├── BadRequest (ValueError)            400 invalid_request, unknown_purpose
     ├── Unauthenticated (PermissionError)  401 unauthenticated, invalid_assertion, assertion_replayed
     │    └── CitizenTokenInvalid           401 citizen_token_invalid (gateway/citizen/token.py)
     ├── Forbidden (PermissionError)        403 forbidden_purpose, forbidden_check, consent_missing, consent_revoked,
 │                                          consent_expired, consent_not_yet_valid, consent_out_of_scope,
 │                                          forbidden_role, forbidden_service
     ├── NotFound (LookupError)             404 subject_not_found, not_found, service_not_found
     ├── MethodNotAllowed                   405 method_not_allowed
     ├── RequestTimeout (TimeoutError)      408 request_timeout
     ├── PayloadTooLarge                    413 body_too_large
     ├── UnsupportedMediaType               415 unsupported_media_type
     ├── (gateway.api.audit) ExportTooLarge 422 export_too_large
     ├── TooManyRequests                    429 rate_limited, too_many_refusals
     ├── HeadersTooLarge                    431 headers_too_large
     ├── InternalError                      500 internal_error
     ├── UpstreamError                      502 source_unavailable, source_rejected, source_fault,
     │    │                                     source_malformed, source_too_large (a service's administration)
     │    └── UpstreamTimeout (TimeoutError) 504 source_timeout
     └── ServiceUnavailable                 503 audit_unavailable, access_log_corrupt, not_ready,
                                                replay_history_lost
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import orjson

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "schemas" / "errors.json"
PROBLEM_CONTENT_TYPE = "application/problem+json"


@cache
def catalogue() -> dict[str, dict[str, Any]]:
    data = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    prefix = data["type_prefix"]
    return {e["code"]: {**e, "type": prefix + e["code"]} for e in data["errors"]}


class GatewayError(Exception):
    """A refusal with a stable code. ``detail`` is shown to the client: our words only."""

    default_code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code or self.default_code
        entry = catalogue().get(self.code)
        if entry is None:
            raise ValueError(f"error code {self.code!r} is not in the catalogue")
        self.status: int = entry["status"]
        self.title: str = entry["title"]
        self.type: str = entry["type"]
        self.detail = detail
        self.headers = headers or {}


class BadRequest(GatewayError, ValueError):
    default_code = "invalid_request"


CHALLENGE = 'Bearer realm="anss-gateway"'
TOKEN_CHALLENGE = CHALLENGE + ', error="invalid_token"'  # RFC 6750 section 3.1: a token came, and was refused


class Unauthenticated(GatewayError, PermissionError):
    """401: without a token (``unauthenticated``) the challenge names the scheme only; a token that was sent and
    refused (``invalid_assertion``, ``assertion_replayed``) adds ``error="invalid_token"`` (RFC 6750 section 3)."""

    default_code = "unauthenticated"

    def __init__(self, detail: str, code: str | None = None) -> None:
        challenge = CHALLENGE if (code or self.default_code) == self.default_code else TOKEN_CHALLENGE
        super().__init__(detail, code, {"WWW-Authenticate": challenge})


class Forbidden(GatewayError, PermissionError):
    default_code = "forbidden_check"


class NotFound(GatewayError, LookupError):
    default_code = "not_found"


class MethodNotAllowed(GatewayError):
    default_code = "method_not_allowed"


class RequestTimeout(GatewayError, TimeoutError):
    default_code = "request_timeout"


class PayloadTooLarge(GatewayError):
    default_code = "body_too_large"


class TooManyRequests(GatewayError):
    default_code = "rate_limited"


class HeadersTooLarge(GatewayError):
    default_code = "headers_too_large"


class UnsupportedMediaType(GatewayError):
    default_code = "unsupported_media_type"


class InternalError(GatewayError):
    default_code = "internal_error"


class ServiceUnavailable(GatewayError):
    default_code = "not_ready"


def problem_body(error: GatewayError, request_id: str, instance: str | None = None) -> bytes:
    """The RFC 9457 document for ``error`` (with our ``code`` and ``request_id`` extensions)."""
    problem: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "request_id": request_id,
    }
    if instance:
        problem["instance"] = instance
    return orjson.dumps(problem)


class UpstreamError(GatewayError):
    """The administration behind a service call failed; ``code`` is the connector's stable code."""

    default_code = "source_unavailable"


class UpstreamTimeout(UpstreamError, TimeoutError):
    default_code = "source_timeout"


__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "BadRequest",
    "Forbidden",
    "GatewayError",
    "HeadersTooLarge",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthenticated",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamTimeout",
    "catalogue",
    "problem_body",
]
