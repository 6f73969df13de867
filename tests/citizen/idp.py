"""The tests act as the citizens' identity provider: their own keys (Ed25519, P-256, RSA), their own JWKS
file, and tokens with whatever defect a test needs (signed by hand where a JOSE library would refuse)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.crypto.keys import b64url

ISSUER = "https://idp.test.anss.ma"
AUDIENCE = "anss-gateway-citizens-test"
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _public_jwk(private: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@dataclass
class IdentityProvider:
    jwks_file: Path
    issuer: str = ISSUER
    audience: str = AUDIENCE
    keys: dict[str, tuple[str, PrivateKey]] = field(default_factory=dict)  # kid -> (alg, private key)

    @classmethod
    def create(cls, directory: Path) -> IdentityProvider:
        idp = cls(directory / "idp-jwks.json")
        idp.add_key("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate())
        idp.add_key("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))
        idp.add_key("rsa-1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return idp

    def add_key(self, kid: str, alg: str, private: PrivateKey) -> None:
        self.keys[kid] = (alg, private)
        self.publish()

    def publish(self, extra: list[dict[str, Any]] | None = None) -> None:
        document = {"keys": [_public_jwk(private, kid, alg) for kid, (alg, private) in self.keys.items()]
                    + (extra or [])}
        self.jwks_file.write_text(json.dumps(document, indent=2), encoding="utf-8")

    def claims(self, who: str, cin: str | None = None, lifetime_s: int = 300, **changes: Any) -> dict[str, Any]:
        """Valid claims for the citizen whose IDCS is ``who``; ``changes`` override (``None`` removes a claim)."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": f"citizen-{uuid.uuid4()}",
                                  "iat": now, "nbf": now, "exp": now + lifetime_s, "jti": uuid.uuid4().hex,
                                  "idcs": who}
        if cin is not None:
            claims["cin"] = cin
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, who: str, cin: str | None = None, kid: str = "ed-1", headers: dict[str, Any] | None = None,
              **changes: Any) -> str:
        alg, private = self.keys[kid]
        return jwt.encode(self.claims(who, cin, **changes), private, algorithm=alg,
                          headers={"kid": kid, "typ": "JWT", **(headers or {})})

    def signed_payload(self, payload: bytes, kid: str = "ed-1") -> str:
        """Any payload bytes, validly signed by the provider's Ed25519 key (a malformed token it really signed)."""
        _, private = self.keys[kid]
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        signing_input = f"{_segment({'alg': 'EdDSA', 'kid': kid, 'typ': 'JWT'})}.{b64url(payload)}"
        return f"{signing_input}.{b64url(private.sign(signing_input.encode()))}"

    def unsigned(self, idcs: str, kid: str = "ed-1", signature: str = "") -> str:
        """``alg: none`` (with an empty signature, as RFC 7519 writes it, or any other)."""
        return f"{_segment({'alg': 'none', 'kid': kid, 'typ': 'JWT'})}.{_segment(self.claims(idcs))}.{signature}"

    def hs256_with_public_key(self, idcs: str, kid: str = "rsa-1") -> str:
        """Algorithm confusion: HMAC keyed with the provider's public key (PEM), as an attacker can."""
        from cryptography.hazmat.primitives import serialization

        _, private = self.keys[kid]
        secret = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        signing_input = f"{_segment({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'})}.{_segment(self.claims(idcs))}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
