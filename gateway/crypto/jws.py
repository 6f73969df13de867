"""Signatures on the gateway's answers: a compact JWS with detached payload (RFC 7515 appendix F).

``X-JWS-Signature: <protected header>..<signature>`` covers the exact response body bytes. The protected
header carries ``alg``, ``kid``, ``iat``, the request's ``request_id`` and ``request_sha256`` =
base64url(SHA-256(jti || 0x0A || request body)) — the question this is the answer to, so an answer cannot
be presented as the answer to another question (``jti`` is empty when the request carried no valid
assertion). The payload is the ordinary
base64url-encoded body (no ``b64: false``), so any standard JOSE library verifies it given only the
gateway's JWKS: re-insert ``base64url(body)`` between the two dots.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
from cryptography.hazmat.primitives.hashes import SHA256

from gateway.crypto.keys import PublicKey, SigningKey, b64url, b64url_decode

SIGNATURE_HEADER = "X-JWS-Signature"


def _sign(key: SigningKey, data: bytes) -> bytes:
    private = key.private
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(data)
    der = private.sign(data, ec.ECDSA(SHA256()))
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def request_digest(jti: str, body: bytes) -> str:
    """What binds an answer to its question: base64url(SHA-256(jti || LF || body))."""
    return b64url(hashlib.sha256(jti.encode("utf-8") + b"\n" + body).digest())


def detached(key: SigningKey, header: dict[str, object], payload: bytes) -> str:
    """A JWS with detached payload (RFC 7515 appendix F), ``<protected>..<signature>``: the protected header is
    ``header`` with ``alg`` and ``kid`` of ``key``, members sorted, no whitespace."""
    protected = b64url(json.dumps({**header, "alg": key.alg, "kid": key.kid}, separators=(",", ":"),
                                  sort_keys=True).encode())
    return f"{protected}..{b64url(_sign(key, f'{protected}.{b64url(payload)}'.encode('ascii')))}"


def sign_detached(key: SigningKey, body: bytes, request_id: str, now: int | None = None,
                  request_sha256: str | None = None) -> str:
    header: dict[str, object] = {"iat": int(time.time()) if now is None else now, "request_id": request_id}
    if request_sha256 is not None:
        header["request_sha256"] = request_sha256
    return detached(key, header, body)


def sign_compact(key: SigningKey, header: dict[str, object], payload: bytes) -> str:
    """A compact JWS (RFC 7515 §7.1) of ``payload``, with ``alg`` and ``kid`` of ``key`` in its protected header."""
    protected = b64url(json.dumps({**header, "alg": key.alg, "kid": key.kid}, separators=(",", ":")).encode())
    signing_input = f"{protected}.{b64url(payload)}"
    return f"{signing_input}.{b64url(_sign(key, signing_input.encode('ascii')))}"


class SignatureInvalid(ValueError):
    pass


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _strict_b64url(text: str) -> bytes:
    """Base64url as RFC 7515 requires it: the URL-safe alphabet, no padding, and the canonical encoding
    (unused trailing bits zero) — so a signature has exactly one textual form."""
    if not _B64URL.fullmatch(text):
        raise SignatureInvalid("not base64url")
    raw = b64url_decode(text)
    if b64url(raw) != text:
        raise SignatureInvalid("not the canonical base64url encoding")
    return raw


def verify_detached(token: str, body: bytes, keys_by_kid: dict[str, PublicKey]) -> dict[str, object]:
    """Verify a detached JWS over ``body``; return its protected header. Used by the bundled client."""
    try:
        protected, empty, signature = token.split(".")
        header = json.loads(_strict_b64url(protected))
        raw = _strict_b64url(signature)
    except ValueError as exc:
        raise SignatureInvalid("malformed detached JWS") from exc
    if empty or not isinstance(header, dict):
        raise SignatureInvalid("not a detached JWS")
    key = keys_by_kid.get(str(header.get("kid")))
    if key is None:
        raise SignatureInvalid("unknown kid")
    verify_signature(key, header.get("alg"), raw, f"{protected}.{b64url(body)}".encode("ascii"))
    return header


def verify_signature(key: PublicKey, alg: object, signature: bytes, signing_input: bytes) -> None:
    """Check a JWS signature (RFC 7515 §5.2 step 8; RFC 7518 §3.4 and RFC 8037 §3.1 for the two algorithms
    accepted): ``alg`` must be the key's algorithm; ES256 signatures are the 64-byte R ‖ S form.
    Raises ``SignatureInvalid``."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey) and alg == "EdDSA":
            key.verify(signature, signing_input)
        elif isinstance(key, ec.EllipticCurvePublicKey) and alg == "ES256" and len(signature) == 64:
            der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                             int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(SHA256()))
        else:
            raise SignatureInvalid("algorithm does not match the key")
    except SignatureInvalid:
        raise
    except Exception as exc:
        raise SignatureInvalid("signature does not verify") from exc
