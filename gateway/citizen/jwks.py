"""The identity provider's public keys, read from a JWKS file on disk (never fetched at request time).

Only asymmetric signature keys are kept, each bound to the one algorithm its type allows: ``OKP``/``Ed25519``
→ ``EdDSA``, ``EC``/``P-256`` → ``ES256``, ``RSA`` (2048 bits or more) → ``RS256``; and only if that algorithm
is allowed by ``[citizens] algorithms``. Keys for encryption (``use`` ≠ ``sig``), of other types or
algorithms are skipped (a provider's JWKS often holds some); a file holding private key material, a key
without ``kid``, a duplicate ``kid`` or no usable key at all is refused.

``JwksFile`` re-reads the file when it changes (checked at most once a second, off the event loop), so an
operator replaces it when the provider rotates its keys; a broken replacement is logged and the keys read
before stay in use.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

log = structlog.get_logger(__name__)

MIN_RSA_BITS = 2048
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class JwksError(ValueError):
    """The JWKS cannot be used; the message says why (never any key material)."""


def algorithm_of(jwk: Mapping[str, Any]) -> str | None:
    """The one JOSE algorithm this gateway verifies with a key of this type, or ``None``."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "RSA":
        return "RS256"
    return None


def parse_jwks(document: Any, allowed: Sequence[str]) -> dict[str, jwt.PyJWK]:
    """kid → key, for the usable keys of a JWKS document (see the module docstring)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("not a JWKS: a JSON object with a `keys` list is expected")
    keys: dict[str, jwt.PyJWK] = {}
    seen: set[str] = set()
    for i, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict):
            raise JwksError(f"keys[{i}] is not a JSON object")
        if PRIVATE_MEMBERS & jwk.keys():
            raise JwksError(f"keys[{i}] holds private or secret key material; the file must hold public keys only")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise JwksError(f"keys[{i}] has no `kid`")
        if kid in seen:
            raise JwksError(f"keys[{i}]: the kid {kid!r} appears twice")
        seen.add(kid)
        alg = algorithm_of(jwk)
        if jwk.get("use", "sig") != "sig" or alg is None or alg not in allowed or jwk.get("alg", alg) != alg:
            continue  # not a signature key we verify with: never used
        try:
            key = jwt.PyJWK(jwk, alg)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise JwksError(f"keys[{i}] (kid {kid!r}) is not a valid {alg} public key") from exc
        if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
            raise JwksError(f"keys[{i}] (kid {kid!r}): RSA keys need at least {MIN_RSA_BITS} bits")
        keys[kid] = key
    if not keys:
        raise JwksError(f"no usable signature key (Ed25519, P-256 or RSA, `use` sig, for {list(allowed)})")
    return keys


def read_jwks(path: Path, allowed: Sequence[str]) -> dict[str, jwt.PyJWK]:
    try:
        document = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise JwksError(f"not JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise JwksError("not UTF-8 JSON") from exc
    return parse_jwks(document, allowed)


class JwksFile:
    """The keys of one JWKS file, re-read when the file changes."""

    def __init__(self, path: Path, allowed: Sequence[str], recheck_s: float = 1.0) -> None:
        self.path = path
        self.allowed = tuple(allowed)
        self.recheck_s = recheck_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, st.st_ino

    def load(self) -> None:
        """Read the file now; ``OSError`` or ``JwksError`` if it cannot be used (at start: the gateway stops)."""
        stamp = self._file_stamp()
        self._keys = read_jwks(self.path, self.allowed)
        self._stamp, self._checked = stamp, time.monotonic()

    def _refresh(self) -> None:
        stamp: tuple[int, int, int] | None = None
        try:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                keys = read_jwks(self.path, self.allowed)
                self._keys = keys
                log.info("citizen_jwks_reloaded", keys=sorted(keys))
        except (OSError, JwksError) as exc:
            if stamp != self._stamp:  # once per version of the file, not every second
                log.error("citizen_jwks_unreadable", path=str(self.path), error=str(exc), kept=sorted(self._keys))
        self._stamp = stamp

    async def keys(self) -> Mapping[str, jwt.PyJWK]:
        now = time.monotonic()
        if now - self._checked >= self.recheck_s:
            self._checked = now
            await asyncio.to_thread(self._refresh)
        return self._keys
