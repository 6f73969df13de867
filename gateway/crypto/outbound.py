"""Signatures on the gateway's calls to administrations (gateway → administration).

Every outbound call carries ``Authorization: Bearer <JWT>`` signed with the gateway's key and bound to
that one call: ``aud`` is the target administration, ``htm``/``htu``/``body_sha256`` are the call's
method, path+query and body digest, ``client``/``purpose`` name who asked and why. The JWT lives 60 s.
Administrations (and our simulators) verify it with ``verify_outbound``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from gateway.crypto.keys import PublicKey, SigningKey, algorithm_for, b64url

OUTBOUND_TTL_S = 60
ALLOWED_ALGORITHMS = ["EdDSA", "ES256"]


def body_digest(body: bytes) -> str:
    return b64url(hashlib.sha256(body).digest())


class OutboundSigner:
    """Signs outbound calls for one gateway identity and one requesting client/purpose."""

    def __init__(self, key: SigningKey, gateway_id: str, client_id: str, purpose: str) -> None:
        self._key = key
        self._gateway_id = gateway_id
        self._client_id = client_id
        self._purpose = purpose

    def __call__(self, method: str, path_qs: str, body: bytes, audience: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self._gateway_id,
            "aud": audience,
            "iat": now,
            "exp": now + OUTBOUND_TTL_S,
            "jti": uuid.uuid4().hex,
            "htm": method.upper(),
            "htu": path_qs,
            "body_sha256": body_digest(body),
            "client": self._client_id,
            "purpose": self._purpose,
        }
        token = jwt.encode(claims, self._key.private, algorithm=self._key.alg, headers={"kid": self._key.kid})
        return f"Bearer {token}"


class OutboundAuthError(Exception):
    """The call's signature is missing or does not hold. ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SeenTokens:
    """The ``jti`` of every accepted token until it expires: a second use of one is a replay."""

    def __init__(self, clock: Callable[[], float] = time.time, purge_every_s: float = 10.0) -> None:
        self._expiry: dict[str, float] = {}
        self._clock, self._purge_every_s = clock, purge_every_s
        self._next_purge = 0.0

    def first_use(self, jti: str, expires_at: float) -> bool:
        now = self._clock()
        if now >= self._next_purge:  # expired ones leave: memory follows the call rate times the lifetime
            self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            self._next_purge = now + self._purge_every_s
        if self._expiry.get(jti, 0.0) > now:
            return False
        self._expiry[jti] = expires_at
        return True


def verify_outbound(
    authorization: str | None,
    method: str,
    path_qs: str,
    body: bytes,
    audience: str,
    trusted: Mapping[str, PublicKey],
    leeway_s: int = 5,
    issuer: str | None = None,
    seen: SeenTokens | None = None,
) -> dict[str, Any]:
    """Check a gateway call's signature as an administration would (docs/security.md, "Verifying the gateway's
    calls"); return its claims. ``issuer``: the gateway id ``iss`` must be; ``seen``: refuse a ``jti`` used before."""
    if not authorization or not authorization.startswith("Bearer "):
        raise OutboundAuthError("missing bearer token")
    token = authorization[len("Bearer ") :]
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise OutboundAuthError("malformed token") from exc
    key = trusted.get(str(header.get("kid")))
    if key is None:
        raise OutboundAuthError("unknown signing key")
    alg = header.get("alg")
    if alg != algorithm_for(key):  # the key's own algorithm
        raise OutboundAuthError("the token's alg is not its key's")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            leeway=leeway_s,
            options={"require": ["iss", "aud", "iat", "exp", "jti", "htm", "htu", "body_sha256"]},
        )
    except (jwt.PyJWTError, TypeError, ValueError) as exc:  # whatever the token holds, a refusal, never a crash
        raise OutboundAuthError(f"invalid token: {type(exc).__name__}") from exc
    if not isinstance(claims["aud"], str) or (issuer is not None and claims["iss"] != issuer):
        raise OutboundAuthError("token of another issuer, or for several audiences")
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= 256:
        raise OutboundAuthError("jti must be a non-empty string")
    if claims["exp"] - claims["iat"] > OUTBOUND_TTL_S:
        raise OutboundAuthError("token lives too long")
    if claims["htm"] != method.upper() or claims["htu"] != path_qs:
        raise OutboundAuthError("token is bound to another call")
    if claims["body_sha256"] != body_digest(body):
        raise OutboundAuthError("body does not match its digest")
    if seen is not None and not seen.first_use(claims["jti"], float(claims["exp"]) + leeway_s):
        raise OutboundAuthError("token already used (replay)")
    return claims
