"""Officers' console sessions: signed, expiring cookies that every replica checks alike, and CSRF tokens.

Nothing is kept server-side. A session cookie is ``<payload>.<mac>``: the payload is base64url JSON (officer id,
session id, login time, expiry, the CSRF token its forms carry, and a tag of the officer's password hash, so
changing a password ends that officer's sessions); the MAC is HMAC-SHA256 under the console session key, with a
domain label so a login token can never pass for a session. Replicas sharing the key (``[console]
session_key_file`` or ``$ANSS_GATEWAY_CONSOLE_SESSION_KEY``; in development a key under the state directory,
shared by replicas on one host) accept each other's cookies.

A session ends ``session_idle_minutes`` after its last page (each page renews it) and at the latest
``session_max_hours`` after the login. Signing out deletes the cookie from the browser; a copy taken before
stays valid until its idle expiry (keep the idle time short).

Before login there is no session, so the login form is protected by a *login token*: a signed cookie holding
a nonce, which the form must echo (double submit), valid ten minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from gateway.stores.files import create_once

SESSION_COOKIE = "anss_console"
LOGIN_COOKIE = "anss_console_login"
SESSION_KEY_ENV = "ANSS_GATEWAY_CONSOLE_SESSION_KEY"
LOGIN_TOKEN_S = 600.0
_SESSION_LABEL = b"anss-console-session-v1."
_LOGIN_LABEL = b"anss-console-login-v1."
_PASSWORD_LABEL = b"anss-console-password-v1."
SEALED = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", re.ASCII)  # <payload>.<mac>, both base64url


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    officer: str
    session_id: str
    login_at: float
    expires_at: float
    csrf: str
    password_tag: str


class SessionCodec:
    """Makes and checks session cookies and login tokens under one key (see the module docstring)."""

    def __init__(self, key: bytes, *, idle_s: float, max_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("the console session key must hold at least 32 bytes")
        self._key = key
        self.idle_s, self.max_s, self.clock = idle_s, max_s, clock

    def __repr__(self) -> str:
        return "SessionCodec(<key hidden>)"

    def password_tag(self, password_hash: str) -> str:
        return _b64(hmac.new(self._key, _PASSWORD_LABEL + password_hash.encode(), hashlib.sha256).digest()[:12])

    def _mac(self, label: bytes, payload: str) -> str:
        return _b64(hmac.new(self._key, label + payload.encode("ascii"), hashlib.sha256).digest())

    def _seal(self, label: bytes, data: dict[str, object]) -> str:
        payload = _b64(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
        return f"{payload}.{self._mac(label, payload)}"

    def _unseal(self, label: bytes, value: str | None) -> dict[str, object] | None:
        """The data of a sealed value, or ``None`` if it is missing, malformed (anything but two base64url parts:
        a cookie is whatever the client sent) or its MAC does not match."""
        if not value or len(value) > 2048 or not SEALED.fullmatch(value):
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(label, payload)):
            return None
        try:
            data = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    # --- sessions ---------------------------------------------------------------------------------------------------

    def open(self, officer: str, password_hash: str) -> Session:
        now = self.clock()
        return Session(officer, secrets.token_urlsafe(12), now, min(now + self.idle_s, now + self.max_s),
                       secrets.token_urlsafe(24), self.password_tag(password_hash))

    def renew(self, session: Session) -> Session:
        return replace(session, expires_at=min(self.clock() + self.idle_s, session.login_at + self.max_s))

    def encode(self, session: Session) -> str:
        return self._seal(_SESSION_LABEL, {"o": session.officer, "s": session.session_id, "l": session.login_at,
                                           "e": session.expires_at, "c": session.csrf, "p": session.password_tag})

    def decode(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or ``None`` if it is missing, forged, malformed or expired."""
        data = self._unseal(_SESSION_LABEL, cookie)
        if data is None:
            return None
        try:
            session = Session(str(data["o"]), str(data["s"]), float(str(data["l"])), float(str(data["e"])),
                              str(data["c"]), str(data["p"]))
        except (KeyError, ValueError):
            return None
        now = self.clock()
        if now >= session.expires_at or now >= session.login_at + self.max_s:
            return None
        return session

    # --- login tokens -----------------------------------------------------------------------------------------------

    def login_token(self) -> tuple[str, str]:
        """``(cookie value, form value)`` of a fresh login token."""
        nonce = secrets.token_urlsafe(24)
        return self._seal(_LOGIN_LABEL, {"n": nonce, "e": self.clock() + LOGIN_TOKEN_S}), nonce

    def check_login_token(self, cookie: str | None, form_value: str | None) -> bool:
        data = self._unseal(_LOGIN_LABEL, cookie)
        if data is None or not form_value:
            return False
        try:
            fresh = self.clock() < float(str(data["e"]))
        except (KeyError, ValueError):
            return False
        return fresh and _same(str(data.get("n", "")), form_value)


def _same(expected: str, given: str) -> bool:
    """Constant-time equality of two texts; ``given`` may hold any character (compare_digest would raise
    TypeError on non-ASCII str), so both are compared as UTF-8 bytes, lone surrogates replaced."""
    return hmac.compare_digest(expected.encode("utf-8", "replace"), given.encode("utf-8", "replace"))


def csrf_matches(session: Session, form_value: str | None) -> bool:
    return bool(form_value) and _same(session.csrf, str(form_value))


def load_session_key(key_file: Path | None, state_dir: Path) -> bytes:
    """From ``$ANSS_GATEWAY_CONSOLE_SESSION_KEY`` (hex), else ``key_file``, else a dev key under state_dir."""
    env = os.environ.get(SESSION_KEY_ENV)
    if env:
        return bytes.fromhex(env)
    path = key_file or state_dir / "keys" / "console-session.key"
    if key_file is None:
        create_once(path, secrets.token_hex(32).encode())  # a replica that got there first wins
    return bytes.fromhex(path.read_text().strip())
