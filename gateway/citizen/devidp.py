"""The development identity provider: a key pair under ``state_dir/citizen-idp/`` and the tokens it mints.

With ``[citizens] jwks_file`` unset, the gateway trusts this provider's JWKS (written next to its private
key on first use) and ``anss-gateway citizen token --idcs ...`` mints short-lived tokens with it, so a
newcomer can try ``GET /v1/citizen/access-log``. Minting is refused as soon as the configured JWKS is
another one: in production the gateway holds no identity provider's private key.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from gateway.config.settings import Settings
from gateway.crypto import keys
from gateway.crypto.keys import SigningKey

DEFAULT_LIFETIME_S = 600


class NotTheDevProvider(RuntimeError):
    """The gateway is configured with another identity provider's keys: nothing can be minted here."""


def dev_dir(state_dir: Path) -> Path:
    return state_dir / "citizen-idp"


def dev_jwks_path(state_dir: Path) -> Path:
    return dev_dir(state_dir) / "jwks.json"


def jwks_path(settings: Settings) -> Path:
    """The JWKS the gateway verifies citizens' tokens with: the configured file, else the dev provider's."""
    return settings.citizens.jwks_file or dev_jwks_path(settings.state_dir)


def uses_dev_provider(settings: Settings) -> bool:
    configured = settings.citizens.jwks_file
    return configured is None or configured.resolve() == dev_jwks_path(settings.state_dir).resolve()


def ensure(state_dir: Path) -> SigningKey:
    """The dev provider's key (created on first use, mode 0600) with its JWKS written beside it."""
    key = keys.load_or_create(dev_dir(state_dir) / "signing.pem")
    path = dev_jwks_path(state_dir)
    document = json.dumps(keys.jwks([key]), indent=2) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != document:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(document, encoding="utf-8")
        tmp.replace(path)  # atomic: a running gateway never reads half a file
    return key


def mint(settings: Settings, idcs: str, cin: str | None = None, lifetime_s: int = DEFAULT_LIFETIME_S,
         now: float | None = None) -> str:
    """A token of the dev provider for this citizen, valid ``lifetime_s`` seconds from now."""
    if not uses_dev_provider(settings):
        raise NotTheDevProvider(f"{settings.citizens.jwks_setting} names another identity provider's keys; "
                                "tokens come from that provider, not from this gateway")
    config = settings.citizens
    if not 1 <= lifetime_s <= config.max_token_lifetime_s:
        raise ValueError(f"the lifetime must be between 1 and {config.max_token_lifetime_s} s")
    key = ensure(settings.state_dir)
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": config.issuer, "aud": config.audience, "sub": f"dev-{uuid.uuid4()}",
        "iat": issued, "nbf": issued, "exp": issued + lifetime_s, "jti": uuid.uuid4().hex,
        config.idcs_claim: idcs,
    }
    if cin is not None and config.cin_claim:
        claims[config.cin_claim] = cin
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"})
