"""Subject pseudonyms and body digests: keyed HMACs, so the log can be searched by citizen without ever holding
the identifier, and can attest what was asked and answered without letting anyone guess it. The key lives
outside the database (file or environment).

Body digests are keyed too: a request body is small and predictable (an IDCS has 10^10 values, the rest of
the body is in the entry), so a plain SHA-256 of it would give the identifier back to anyone who reads the log
after a few hours of guessing. With the key, the gateway's operator can still check, in a dispute, that a body
someone presents is the one logged (``body_digest(body)`` equals the entry's ``request_hmac``)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from gateway.config.toml import ConfigError
from gateway.stores.files import create_once

PSEUDONYM_ENV = "ANSS_GATEWAY_PSEUDONYM_KEY"


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the pseudonym key must hold at least 32 bytes")
        self._key = key
        self._digest_key = hmac.new(key, b"anss-gateway: body digest key", hashlib.sha256).digest()

    def __repr__(self) -> str:  # never print the key
        return "Pseudonymiser(<key hidden>)"

    def pseudonym(self, kind: str, identifier: str) -> str:
        return hmac.new(self._key, f"{kind}:{identifier}".encode(), hashlib.sha256).hexdigest()

    def body_digest(self, body: bytes) -> str:
        """HMAC-SHA256 of a request or response body, under a key derived from the pseudonym key."""
        return hmac.new(self._digest_key, body, hashlib.sha256).hexdigest()

    @classmethod
    def load(cls, key_file: Path | None, state_dir: Path) -> Pseudonymiser:
        """From ``$ANSS_GATEWAY_PSEUDONYM_KEY`` (hex), else ``key_file``, else a dev key under state_dir."""
        env = os.environ.get(PSEUDONYM_ENV)
        if env:
            return cls(_hex_key(env, f"${PSEUDONYM_ENV}"))
        path = key_file or state_dir / "keys" / "pseudonym.key"
        if key_file is None:
            create_once(path, secrets.token_hex(32).encode())  # two replicas starting at once share one key
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the pseudonym key ({exc.strerror or exc})") from None
        return cls(_hex_key(text, str(path)))


def _hex_key(text: str, where: str) -> bytes:
    """The key written as hex, at least 32 bytes; ``ConfigError`` naming where it came from, never its value."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{where}: the pseudonym key must be hexadecimal (64 hex digits or more)") from None
    if len(key) < 32:
        raise ConfigError(f"{where}: the pseudonym key must hold at least 32 bytes (64 hex digits)")
    return key
