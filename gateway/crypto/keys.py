"""Signing keys: load production keys from PEM files, generate dev keys, publish them as a JWKS.

Keys are Ed25519 (JOSE ``EdDSA``) or P-256 (``ES256``). A key's ``kid`` is its RFC 7638 thumbprint,
so the same key always has the same id wherever it is published.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.stores.files import create_once

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The public JWK of ``key`` (members in RFC 7638 order), without ``kid``/``alg``."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    numbers = key.public_numbers()
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("only P-256 EC keys are supported")
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members only."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    return "ES256"


@dataclass(frozen=True)
class SigningKey:
    """A private key with its public identity."""

    private: PrivateKey
    kid: str
    alg: str

    @classmethod
    def from_private(cls, private: PrivateKey) -> SigningKey:
        return cls(private=private, kid=thumbprint(public_jwk(private.public_key())), alg=algorithm_for(private))

    @property
    def public(self) -> PublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, str]:
        return published_jwk(self.public, self.kid)


def generate(alg: str = "EdDSA") -> SigningKey:
    private: PrivateKey
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unsupported algorithm {alg!r}")
    return SigningKey.from_private(private)


class KeyFileError(ValueError):
    """A key file that is not a key of the kind asked for; the message names the file, never its content."""


def load_private_pem(path: Path) -> SigningKey:
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not an unencrypted private key in PEM (a public key, or another file?)") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path}: only Ed25519 and P-256 private keys are supported")
    return SigningKey.from_private(private)


def load_public_pem(path: Path) -> PublicKey:
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a public key in PEM") from None
    if not isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyFileError(f"{path}: only Ed25519 and P-256 public keys are supported")
    return public


def private_pem(key: SigningKey) -> bytes:
    return key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create(path: Path, alg: str = "EdDSA") -> SigningKey:
    """Load the PEM private key at ``path``; generate and store it (mode 0600) if it is absent.

    Used for dev keys under the git-ignored state directory. The file is created atomically so two
    processes starting at once end up with the same key.
    """
    if not path.exists():
        create_once(path, private_pem(generate(alg)))  # if another process won the race: keep theirs
    return load_private_pem(path)


def published_jwk(public: PublicKey, kid: str) -> dict[str, str]:
    """The JWK a JWKS publishes for a signing key: its public members, ``kid``, ``alg`` and ``use``."""
    return {**public_jwk(public), "kid": kid, "alg": algorithm_for(public), "use": "sig"}


def jwks(keys: list[SigningKey]) -> dict[str, Any]:
    return {"keys": [k.jwk() for k in keys]}


def public_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        x = int.from_bytes(b64url_decode(jwk["x"]), "big")
        y = int.from_bytes(b64url_decode(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    raise ValueError("unsupported JWK")
