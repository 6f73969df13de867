"""When the gateway signs tree heads, whose keys verify them, and retention.

``TreeHeadSigner`` runs beside a gateway: it signs a head of the access log with the gateway's current key
whenever the log has grown and a head is due — ``interval_s`` after the latest head, or as soon as
``max_entries`` entries are unsigned — and, with a retention period, prunes entries older than it every hour.
Due-ness is read from the store (the latest head's time and size), so replicas sharing one log share one
cadence, and the store makes sure two replicas never sign two heads of one size; a store that elects its
signer (PostgreSQL: ``Elected``) has only the elected process sign and prune. On the way out it signs
a last head, so a stopped gateway leaves no unsigned tail behind.

``tree_head_keys`` gathers the public keys a verifier trusts. In production — a ``signing_key_file`` is
configured — only the configured key files (``signing_key_file``, ``previous_signing_key_files``): the state
directory is writable by whoever runs the gateway, so a key planted in its key store (say, as a "retired" key)
must not make heads it signed verify; keys retired from the configuration are given as a JWKS document
(``audit verify --jwks``). In development (no key file configured) the key store *is* where the gateway's keys
live, and every key it ever held counts (retired keys included: heads outlive rotation).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import structlog

from gateway import background
from gateway.audit.merkle import SignedTreeHead
from gateway.audit.store import AccessLog
from gateway.config.settings import ConfigError, Settings
from gateway.crypto import keys
from gateway.crypto.keyring import gateway_key_dir
from gateway.crypto.keys import PublicKey, SigningKey
from gateway.crypto.keystore import KeyStore, Manifest

log = structlog.get_logger("gateway.audit")
PRUNE_EVERY_S = 3600.0


def log_id_for(gateway_id: str) -> str:
    """The log id of a gateway's access log: ``<gateway id>.access``, in the tree-head alphabet."""
    cleaned = re.sub(r"[^A-Za-z0-9._:-]", "-", gateway_id).lstrip("._:-")[:120] or "gateway"
    return f"{cleaned}.access"


@runtime_checkable
class Elected(Protocol):
    """A store shared by processes that elect one of them to sign tree heads (PostgreSQL)."""

    async def leading(self) -> bool:
        """Whether this process is the elected signer now (taking over when the seat is free)."""
        ...


class HeadGuard(Protocol):
    """Checked before each head is signed and told of each head signed (``gateway.audit.witness.guard``)."""

    async def check(self) -> None:
        """Raise ``AccessLogCorrupt`` to stop the signing."""
        ...

    async def publish(self, head: SignedTreeHead) -> object: ...


class TreeHeadSigner:
    """Signs tree heads of ``access_log`` on a cadence (see the module docstring). On a store that elects its
    signer (``Elected``), only the elected process signs and prunes; the others' rounds do nothing. With a
    ``guard``, each head is signed only after ``guard.check()`` passed, and then given to ``guard.publish``."""

    def __init__(self, access_log: AccessLog, key: Callable[[], SigningKey], log_id: str, *,
                 interval_s: float = 60.0, max_entries: int = 10_000, retention_days: int = 0,
                 poll_s: float | None = None, clock: Callable[[], float] = time.time,
                 guard: HeadGuard | None = None) -> None:
        if interval_s <= 0 or max_entries < 1 or retention_days < 0:
            raise ValueError("interval_s > 0, max_entries >= 1 and retention_days >= 0, please")
        self.access_log, self.key, self.log_id = access_log, key, log_id
        self.interval_s, self.max_entries, self.retention_days = interval_s, max_entries, retention_days
        self.poll_s = min(1.0, interval_s / 4) if poll_s is None else poll_s
        self.clock = clock
        self.guard = guard
        self._pruned_at = float("-inf")

    async def due(self) -> bool:
        """Whether the log has grown since the latest head and a head is due."""
        count = await self.access_log.count()
        latest = await self.access_log.latest_tree_head()
        if latest is None:
            return count > 0
        unsigned = count - latest.head.tree_size
        age_s = self.clock() - latest.head.timestamp_ms / 1000
        return unsigned > 0 and (unsigned >= self.max_entries or age_s >= self.interval_s)

    async def tick(self) -> SignedTreeHead | None:
        """One round: sign a head if one is due, prune if retention says so; the head signed, if any."""
        if not await self._elected():
            return None
        signed = await self._sign() if await self.due() else None
        if signed is not None:
            log.info("tree_head_signed", tree_size=signed.head.tree_size, kid=self.key().kid)
        if self.retention_days and self.clock() - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = self.clock()
            cutoff = datetime.fromtimestamp(self.clock(), UTC) - timedelta(days=self.retention_days)
            pruned = await self.access_log.prune(cutoff)
            if pruned:
                log.info("access_log_pruned", entries=pruned, before=cutoff.isoformat())
        return signed

    async def _sign(self) -> SignedTreeHead | None:
        if self.guard is not None:
            await self.guard.check()
        signed = await self.access_log.issue_tree_head(self.key(), self.log_id)
        if signed is not None and self.guard is not None:
            await self.guard.publish(signed)
        return signed

    async def _elected(self) -> bool:
        return not isinstance(self.access_log, Elected) or await self.access_log.leading()

    async def run(self) -> None:
        """Tick until cancelled; a failing round is logged and retried, never fatal."""
        while True:
            try:
                await self.tick()
            except Exception as exc:
                log.error("tree_head_round_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.poll_s)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TreeHeadSigner]:
        """``run`` in the background for the ``async with`` block; then one last head for the tail."""
        task = asyncio.create_task(self.run(), name="tree-head-signer")
        try:
            yield self
        finally:
            await background.stop(task)
            try:
                count = await self.access_log.count()
                latest = await self.access_log.latest_tree_head()
                if count and (latest is None or latest.head.tree_size < count) and await self._elected():
                    await self._sign()
            except Exception as exc:
                log.error("tree_head_at_exit_failed", error=f"{type(exc).__name__}: {exc}")


# --- whose keys verify tree heads ------------------------------------------------------------------------------------


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, PublicKey]:
    """kid → public key of a JWKS (``kid`` as published, else the RFC 7638 thumbprint)."""
    found: dict[str, PublicKey] = {}
    for jwk in jwks.get("keys", []) if isinstance(jwks.get("keys"), list) else []:
        if not isinstance(jwk, dict):
            continue
        try:
            public = keys.public_from_jwk(jwk)
        except (ValueError, KeyError, TypeError):
            continue
        found[str(jwk.get("kid") or keys.thumbprint(keys.public_jwk(public)))] = public
    return found


def read_jwks_document(path: Path) -> dict[str, Any]:
    """A JWKS file, checked to hold at least one usable key."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JWKS ({exc})") from exc
    if not isinstance(document, dict) or not keys_from_jwks(document):
        raise ConfigError(f"{path}: no Ed25519 or P-256 public key in this JWKS")
    return document


def read_jwks(path: Path) -> dict[str, PublicKey]:
    """kid → public key of a JWKS file."""
    return keys_from_jwks(read_jwks_document(path))


def production_keys(settings: Settings) -> bool:
    """Whether the gateway's keys come from configured files (production), not from the state directory."""
    return settings.signing_key_file is not None


def tree_head_keys(settings: Settings) -> dict[str, PublicKey]:
    """Every public key the configured gateway signs (or ever signed) tree heads with, by kid — in production
    the configured key files only (see the module docstring). Creates nothing: a gateway that never ran has no
    keys yet."""
    found: dict[str, PublicKey] = {}
    for path in (settings.signing_key_file, *tuple(getattr(settings, "previous_signing_key_files", ()) or ())):
        if path is not None and path.exists():
            key = keys.load_private_pem(path)
            found[key.kid] = key.public
    if production_keys(settings):
        return found
    store = KeyStore(gateway_key_dir(settings.state_dir))
    if store.manifest_path.exists():
        manifest = Manifest.parse(store.manifest_path.read_bytes(), store.manifest_path)
        for record in manifest.keys:
            path = store.key_path(record.kid)
            if path.exists():
                found[record.kid] = keys.load_private_pem(path).public
    return found
