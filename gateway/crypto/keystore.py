"""The gateway's own signing keys in a directory, rotated without downtime.

Layout (default ``state_dir/keys/``)::

    keyring.json            {"active": kid, "keys": [{"kid", "created_at", "retired_at": null | RFC 3339}]}
    gateway-<kid>.pem       one PKCS#8 private key per kid (mode 0600)
    .keyring.lock           taken with ``flock`` by every writer

``rotate`` generates a key, makes it active and retires the previous one *now*. A retired key stays
published (in the JWKS) for ``overlap_s`` after its retirement, so answers signed just before a rotation
still verify; after that it is no longer published. Private keys are never deleted by the gateway.

Writes are crash- and race-safe: the new PEM is written and fsynced before ``keyring.json`` is replaced
(tmp file + fsync + rename + directory fsync), all under an exclusive file lock, so a reader never sees an
active kid without its key and two processes rotating at once leave one consistent keyring. Readers take
no lock. A directory holding only the legacy dev key ``gateway-signing.pem`` is adopted on first load.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.config.settings import ConfigError
from gateway.crypto import keys
from gateway.crypto.keys import SigningKey

DEFAULT_OVERLAP_S = 24 * 3600
MANIFEST = "keyring.json"
LOCK_FILE = ".keyring.lock"
LEGACY_KEY = "gateway-signing.pem"

Clock = Callable[[], datetime]


class KeyStoreError(ConfigError):
    """The key directory is unusable (malformed keyring, missing or mismatched key file)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise KeyStoreError(f"{where} must be an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise KeyStoreError(f"{where} must be an RFC 3339 time") from exc
    if moment.tzinfo is None:
        raise KeyStoreError(f"{where} must carry a time zone")
    return moment


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    created_at: datetime
    retired_at: datetime | None = None

    def published_at(self, now: datetime, overlap_s: float) -> bool:
        return self.retired_at is None or self.retired_at + timedelta(seconds=overlap_s) > now

    def as_json(self) -> dict[str, str | None]:
        return {"kid": self.kid, "created_at": rfc3339(self.created_at),
                "retired_at": None if self.retired_at is None else rfc3339(self.retired_at)}


@dataclass(frozen=True)
class Manifest:
    """The parsed ``keyring.json``."""

    active: str
    keys: tuple[KeyRecord, ...]

    def record(self, kid: str) -> KeyRecord:
        return next(r for r in self.keys if r.kid == kid)

    def to_bytes(self) -> bytes:
        document = {"active": self.active, "keys": [r.as_json() for r in self.keys]}
        return (json.dumps(document, indent=2) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes, path: Path) -> Manifest:
        try:
            document: Any = json.loads(raw)
        except ValueError as exc:
            raise KeyStoreError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise KeyStoreError(f"{path}: expected {{\"active\": kid, \"keys\": [...]}}")
        records = []
        for i, entry in enumerate(document["keys"]):
            where = f"{path}: keys[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not entry["kid"]:
                raise KeyStoreError(f"{where} needs a `kid`")
            retired = entry.get("retired_at")
            records.append(KeyRecord(
                kid=entry["kid"],
                created_at=_parse_time(entry.get("created_at"), f"{where}.created_at"),
                retired_at=None if retired is None else _parse_time(retired, f"{where}.retired_at"),
            ))
        active = document.get("active")
        if not any(r.kid == active for r in records):
            raise KeyStoreError(f"{path}: `active` must name one of the listed keys")
        assert isinstance(active, str)
        if len({r.kid for r in records}) != len(records):
            raise KeyStoreError(f"{path}: a kid is listed twice")
        return cls(active, tuple(records))


@dataclass(frozen=True)
class KeySet:
    """What a gateway signs with, what it publishes, and until when that publication holds."""

    active: SigningKey
    published: list[SigningKey]
    changes_at: datetime | None  # the next moment a retired key leaves the published set


@dataclass(frozen=True)
class Rotation:
    previous: str | None  # the kid retired by this rotation
    key: SigningKey  # the new active key
    retired_at: datetime
    previous_published_until: datetime


class KeyStore:
    """Signing keys in ``directory``; see the module docstring for the layout and the guarantees."""

    def __init__(self, directory: Path, overlap_s: float = DEFAULT_OVERLAP_S, clock: Clock = utc_now,
                 min_check_interval_s: float = 1.0) -> None:
        self.directory = Path(directory)
        self.overlap_s = overlap_s
        self.clock = clock
        self.min_check_interval_s = min_check_interval_s
        self._cache: dict[str, SigningKey] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._current: KeySet | None = None
        self._checked_at = float("-inf")

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def key_path(self, kid: str) -> Path:
        return self.directory / f"gateway-{kid}.pem"

    # -- reading ----------------------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The keyring, creating it (or adopting the legacy dev key) if the directory has none."""
        try:
            return Manifest.parse(self.manifest_path.read_bytes(), self.manifest_path)
        except FileNotFoundError:
            pass
        with self._locked():
            existing = self._read_manifest()
            if existing is not None:
                return existing
            legacy = self.directory / LEGACY_KEY
            if legacy.exists():
                try:
                    key = keys.load_private_pem(legacy)
                except ValueError as exc:
                    raise KeyStoreError(f"{legacy}: {exc}") from exc
                created = datetime.fromtimestamp(legacy.stat().st_mtime, UTC)
            else:
                key, created = keys.generate("EdDSA"), self.clock()
            manifest = Manifest(key.kid, (KeyRecord(key.kid, created),))
            self._write_key(key)
            self._write_manifest(manifest)
            return manifest

    def load(self) -> tuple[SigningKey, list[SigningKey]]:
        """The active key and the published keys (active first, then retired keys still in overlap)."""
        current = self.keyset()
        return current.active, current.published

    def keyset(self) -> KeySet:
        stamp = self._stat()
        manifest = self.manifest()
        now = self.clock()
        active = self._key(manifest.active)
        published = [active]
        changes_at: datetime | None = None
        for record in sorted(manifest.keys, key=lambda r: r.retired_at or now, reverse=True):
            if record.kid == manifest.active or not record.published_at(now, self.overlap_s):
                continue
            published.append(self._key(record.kid))
            assert record.retired_at is not None
            until = record.retired_at + timedelta(seconds=self.overlap_s)
            changes_at = until if changes_at is None else min(changes_at, until)
        self._current = KeySet(active, published, changes_at)
        self._stamp = stamp if stamp is not None else self._stat()
        return self._current

    def reload_if_changed(self, monotonic: float | None = None) -> KeySet | None:
        """A new ``KeySet`` if ``keyring.json`` changed or a retired key's overlap ended, else ``None``.

        Cheap enough for every request: at most one ``stat`` per ``min_check_interval_s`` (1 s), and the
        files are only re-read when the keyring was replaced. The first call always loads.
        """
        tick = time.monotonic() if monotonic is None else monotonic
        if self._current is not None and tick - self._checked_at < self.min_check_interval_s:
            return None
        self._checked_at = tick
        current = self._current
        if current is not None and self._stat() == self._stamp and (
                current.changes_at is None or self.clock() < current.changes_at):
            return None
        fresh = self.keyset()
        if current is not None and _kids(fresh) == _kids(current):
            return None
        return fresh

    async def watch(self, apply: Callable[[KeySet], None], interval_s: float = 1.0,
                    on_error: Callable[[BaseException], None] | None = None) -> None:
        """Call ``apply`` with each new ``KeySet`` until cancelled; checks every ``interval_s``.

        A broken keyring (half-edited by hand, a missing PEM) is reported to ``on_error`` and the current
        keys stay in use: a bad rotation never takes the gateway down.
        """
        while True:
            try:
                fresh = await asyncio.to_thread(self.reload_if_changed)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)
            else:
                if fresh is not None:
                    apply(fresh)
            await asyncio.sleep(interval_s)

    # -- writing ----------------------------------------------------------------------------------------

    def rotate(self, alg: str = "EdDSA") -> SigningKey:
        """Generate a key, make it active and retire the previous one now; return the new key."""
        return self.rotate_detailed(alg).key

    def rotate_detailed(self, alg: str = "EdDSA") -> Rotation:
        key = keys.generate(alg)
        self.manifest()  # create or adopt first, so there is something to rotate from
        with self._locked():
            manifest = self._read_manifest()
            assert manifest is not None
            now = self.clock()
            previous = manifest.active
            records = tuple(replace(r, retired_at=now) if r.kid == previous else r for r in manifest.keys)
            self._write_key(key)
            self._write_manifest(Manifest(key.kid, (*records, KeyRecord(key.kid, now))))
        self._stamp = None  # the next reload_if_changed sees the change even within the same mtime tick
        return Rotation(previous, key, now, now + timedelta(seconds=self.overlap_s))

    # -- internals --------------------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.manifest_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def _read_manifest(self) -> Manifest | None:
        try:
            return Manifest.parse(self.manifest_path.read_bytes(), self.manifest_path)
        except FileNotFoundError:
            return None

    def _key(self, kid: str) -> SigningKey:
        cached = self._cache.get(kid)
        if cached is not None:
            return cached
        path = self.key_path(kid)
        try:
            key = keys.load_private_pem(path)
        except FileNotFoundError as exc:
            raise KeyStoreError(f"{path}: the key listed in {MANIFEST} is missing") from exc
        except ValueError as exc:
            raise KeyStoreError(f"{path}: {exc}") from exc
        if key.kid != kid:
            raise KeyStoreError(f"{path}: holds the key {key.kid}, not {kid}")
        self._cache[kid] = key
        return key

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write_key(self, key: SigningKey) -> None:
        self._write_atomically(self.key_path(key.kid), keys.private_pem(key))
        self._cache[key.kid] = key

    def _write_manifest(self, manifest: Manifest) -> None:
        self._write_atomically(self.manifest_path, manifest.to_bytes())

    def _write_atomically(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _kids(keyset: KeySet) -> tuple[str, tuple[str, ...]]:
    return keyset.active.kid, tuple(k.kid for k in keyset.published)
