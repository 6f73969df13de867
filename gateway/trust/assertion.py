"""Who is calling: verifies the client assertion (``Authorization: Bearer <JWT>``) against the request.

The contract (see README): signed with the client's registered key (``EdDSA`` or ``ES256``, ``kid`` in the
header); claims ``iss`` = ``sub`` = client id, ``aud`` = this gateway, ``iat``, ``exp`` (≤ 300 s after
``iat``), ``jti``, ``htm`` (method), ``htu`` (path and query), ``body_sha256`` (base64url SHA-256 of the
exact body). Anything else is refused with 401 and a precise, stable code.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.crypto.jws import SignatureInvalid, verify_signature
from gateway.crypto.keyring import KeyResolver
from gateway.crypto.keys import PublicKey, b64url_decode
from gateway.crypto.outbound import body_digest
from gateway.errors import Unauthenticated

ALLOWED_ALGORITHMS = ("EdDSA", "ES256")
MAX_LIFETIME_S = 300
REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "exp", "jti", "htm", "htu", "body_sha256")


@dataclass(frozen=True)
class Caller:
    """An authenticated client."""

    client_id: str
    kid: str
    jti: str
    expires_at: float  # the assertion's exp: after it (plus leeway) no replica accepts it
    issued_at: float  # the assertion's iat: the replay cache refuses it when it lost its memory after that


def single_authorization(values: list[str]) -> str | None:
    """The one Authorization header; several are ambiguous (which one did a proxy check?) and refused."""
    if len(values) > 1:
        raise Unauthenticated("send exactly one Authorization header")
    return values[0] if values else None


_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("an Authorization: Bearer client assertion is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise Unauthenticated("the Authorization header must be `Bearer <JWT>`")
    token = token.strip()
    if not _COMPACT_JWS.fullmatch(token):  # before any JOSE library sees it: three base64url segments, ASCII
        raise Unauthenticated("the client assertion is not a compact JWS", "invalid_assertion")
    return token


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        protected, payload, _ = token.split(".")
        header = orjson.loads(b64url_decode(protected))
        claims = orjson.loads(b64url_decode(payload))
    except (ValueError, UnicodeDecodeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise Unauthenticated("the client assertion is not a well-formed JWT", "invalid_assertion") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthenticated("the client assertion is not a well-formed JWT", "invalid_assertion")
    return header, claims


def _verify(token: str, header: Mapping[str, Any], key: PublicKey) -> None:
    """The signature over the first two segments, by ``key``, with the algorithm the header names (RFC 7515
    §5.2). A header naming critical extensions is refused: this gateway understands none (§4.1.11)."""
    if "crit" in header:
        raise Unauthenticated("the client assertion names critical extensions (`crit`) this gateway does not "
                              "understand", "invalid_assertion")
    protected, payload, signature = token.split(".")
    try:
        raw = b64url_decode(signature)
        verify_signature(key, header["alg"], raw, f"{protected}.{payload}".encode("ascii"))
    except (ValueError, SignatureInvalid) as exc:
        raise Unauthenticated("the client assertion is invalid (its signature does not verify)",
                              "invalid_assertion") from exc


def authenticate(
    authorization: str | None,
    method: str,
    path_qs: str,
    body: bytes,
    gateway_id: str,
    clients: Mapping[str, object],
    resolver: KeyResolver,
    leeway_s: int,
    sent_target: str | None = None,
) -> Caller:
    token = _bearer(authorization)
    # Who claims to have signed, read without trusting it (the syntax is already checked), then verified once:
    # the signature over exactly these bytes, then the claims (RFC 7519 §7.2).
    header, unverified = _peek(token)
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise Unauthenticated("the assertion must be signed with EdDSA or ES256", "invalid_assertion")
    client_id, kid = unverified.get("iss"), header.get("kid")
    if not isinstance(client_id, str) or client_id not in clients:
        raise Unauthenticated("the assertion's issuer is not a registered client", "invalid_assertion")
    key = resolver.resolve(client_id, kid) if isinstance(kid, str) else None
    if key is None:
        raise Unauthenticated("the assertion's kid is not a registered key of this client", "invalid_assertion")
    _verify(token, header, key)
    claims = unverified  # verified now: the signature covers these very bytes
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:
        raise Unauthenticated(f"the client assertion lacks the claim(s) {', '.join(missing)}", "invalid_assertion")
    for claim in ("iat", "exp", "nbf"):  # NumericDate (RFC 7519 §2): a JSON number, not a string or a boolean
        value = claims.get(claim, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Unauthenticated(f"`{claim}` must be a NumericDate (a number)", "invalid_assertion")
    now = time.time()
    if claims["exp"] <= now - leeway_s:
        raise Unauthenticated("the client assertion has expired", "invalid_assertion")
    if claims["iat"] > now + leeway_s or claims.get("nbf", 0) > now + leeway_s:
        raise Unauthenticated("the client assertion is not yet valid (`iat` or `nbf` in the future)",
                              "invalid_assertion")
    if claims["iss"] != client_id:
        raise Unauthenticated("the assertion's issuer is not a registered client", "invalid_assertion")
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 256:
        raise Unauthenticated("`jti` must be a non-empty string of at most 256 characters", "invalid_assertion")
    if claims["aud"] != gateway_id and not (isinstance(claims["aud"], list) and gateway_id in claims["aud"]):
        raise Unauthenticated("the assertion is addressed to another audience", "invalid_assertion")
    if claims["aud"] != gateway_id:  # one audience, this gateway (a list would be valid JWT, but not our contract)
        raise Unauthenticated("`aud` must be exactly this gateway's id", "invalid_assertion")
    if claims["sub"] != client_id:
        raise Unauthenticated("`sub` must equal `iss`", "invalid_assertion")
    if claims["exp"] - claims["iat"] > MAX_LIFETIME_S:
        raise Unauthenticated(f"the assertion may live at most {MAX_LIFETIME_S} s", "invalid_assertion")
    # ``htu``: the path and query as the client sent them (``sent_target``, the request line's target), or as
    # the server reads them (``path_qs``: an empty query's lone "?" gone)
    htu = claims["htu"]
    if claims["htm"] != method.upper() or not isinstance(htu, str) or htu not in (path_qs, sent_target or path_qs):
        raise Unauthenticated("the assertion is bound to another request", "invalid_assertion")
    if claims["body_sha256"] != body_digest(body):
        raise Unauthenticated("the body does not match `body_sha256`", "invalid_assertion")
    return Caller(client_id=client_id, kid=str(kid), jti=str(claims["jti"]), expires_at=float(claims["exp"]),
                  issued_at=float(claims["iat"]))
