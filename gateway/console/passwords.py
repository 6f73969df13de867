"""Officers' console passwords: scrypt hashes (RFC 7914) as kept in clients.toml, and development passwords.

A hash reads ``scrypt$N$r$p$<salt>$<key>`` (salt and 32-byte key in base64url without padding); ``hash_password``
makes one (``anss-gateway officer password`` prints it), ``verify_password`` checks a candidate in constant time.
Both cost tens of milliseconds on purpose: call them off the event loop.

In development an officer client with ``dev_key = true`` and no ``console_password_hash`` gets a generated
password, written once under ``state_dir/console/`` (mode 0600) and shown at start-up by ``make run``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from gateway.stores.files import create_once

N, R, P = 2**15, 8, 1
KEY_BYTES = 32
MAX_PASSWORD_BYTES = 1024
_HASH = re.compile(r"scrypt\$([0-9]{1,8})\$([0-9]{1,3})\$([0-9]{1,3})\$([A-Za-z0-9_-]{16,64})\$([A-Za-z0-9_-]{43})")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                          maxmem=2 * 128 * r * n + 1024 * 1024)


def hash_password(password: str) -> str:
    if not password or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password holds 1 to {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(16)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(_scrypt(password, salt, N, R, P))}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; with no (or a malformed) hash, spend the same time and say no."""
    match = _HASH.fullmatch(stored or "")
    if match is None or not password or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        _scrypt(password[:MAX_PASSWORD_BYTES] or "-", b"\0" * 16, N, R, P)
        return False
    n, r, p = (int(g) for g in match.group(1, 2, 3))
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        return False
    return hmac.compare_digest(_scrypt(password, _unb64(match.group(4)), n, r, p), _unb64(match.group(5)))


def dev_password_path(state_dir: Path, officer_id: str) -> Path:
    return state_dir / "console" / f"{re.sub(r'[^A-Za-z0-9._-]', '_', officer_id)}.password"


def dev_password(state_dir: Path, officer_id: str) -> tuple[str, Path]:
    """The development password of ``officer_id`` (created on first use) and where it is kept."""
    path = dev_password_path(state_dir, officer_id)
    create_once(path, (secrets.token_urlsafe(12) + "\n").encode())  # a replica that got there first wins
    return path.read_text(encoding="utf-8").strip(), path
