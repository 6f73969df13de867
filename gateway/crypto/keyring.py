"""Which keys the gateway holds: its own signing keys and every registered client's public keys.

The gateway's signing keys come from one of two places:

* production: the PEM file named by ``signing_key_file`` (plus, once settings carry it,
  ``previous_signing_key_files``: older keys still published in the JWKS). Rotating there is a
  configuration change: point ``signing_key_file`` at the new key, list the old file under
  ``previous_signing_key_files`` for the overlap, restart (replica by replica), remove it later;
* otherwise: the rotating ``KeyStore`` in ``state_dir/keys`` (``anss-gateway keys rotate``), which a running
  gateway follows without a restart (``GatewaySigningKeys.kept_current``).

Development client keys (clients marked ``dev_key``) are generated once under the state directory. Client
keys are resolved by ``kid`` (the RFC 7638 thumbprint) through a chain of resolvers, so partner JWKS
fetchers can be added later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from gateway import background
from gateway.config.settings import Settings
from gateway.crypto import keys
from gateway.crypto.keys import PublicKey, SigningKey
from gateway.crypto.keystore import DEFAULT_OVERLAP_S, KeySet, KeyStore

log = structlog.get_logger("gateway.crypto.keys")


def dev_client_key_path(state_dir: Path, client_id: str) -> Path:
    return state_dir / "clients" / f"{client_id}.pem"


def gateway_key_dir(state_dir: Path) -> Path:
    """The rotating key store of a gateway without a configured ``signing_key_file``."""
    return state_dir / "keys"


def gateway_key_path(state_dir: Path) -> Path:
    """The legacy single dev key; adopted into the key store on first load."""
    return gateway_key_dir(state_dir) / "gateway-signing.pem"


def signing_key_overlap_s(settings: Settings) -> float:
    """How long a retired key stays published: ``settings.signing_key_overlap_s``, default 24 h."""
    value = getattr(settings, "signing_key_overlap_s", None)
    return DEFAULT_OVERLAP_S if value is None else float(value)


def _previous_key_files(settings: Settings) -> tuple[Path, ...]:
    return tuple(getattr(settings, "previous_signing_key_files", None) or ())


class HoldsSigningKeys(Protocol):
    """What the running gateway signs with and publishes (``state.Runtime`` is one)."""

    signing_key: SigningKey
    published_keys: list[SigningKey]


class GatewaySigningKeys:
    """The gateway's signing keys, from the configured PEM files or from the rotating key store."""

    def __init__(self, settings: Settings, overlap_s: float | None = None) -> None:
        self.settings = settings
        self.overlap_s = signing_key_overlap_s(settings) if overlap_s is None else overlap_s
        self.store: KeyStore | None = None
        if settings.signing_key_file is None:
            self.store = KeyStore(gateway_key_dir(settings.state_dir), self.overlap_s)

    def load(self) -> tuple[SigningKey, list[SigningKey]]:
        """The active key and every published key (the active one first)."""
        if self.store is not None:
            return self.store.load()
        assert self.settings.signing_key_file is not None
        active = keys.load_private_pem(self.settings.signing_key_file)
        published = [active]
        for path in _previous_key_files(self.settings):
            key = keys.load_private_pem(path)
            if all(k.kid != key.kid for k in published):
                published.append(key)
        return active, published

    async def keep_current(self, holder: HoldsSigningKeys, interval_s: float = 1.0) -> None:
        """Until cancelled: apply every rotation (and every end of overlap) to ``holder``."""
        if self.store is None:
            await asyncio.Event().wait()  # configured files change only with a restart
            return

        def apply(keyset: KeySet) -> None:
            holder.signing_key, holder.published_keys = keyset.active, keyset.published
            log.info("signing_keys_reloaded", kid=keyset.active.kid, published=[k.kid for k in keyset.published])

        def report(exc: BaseException) -> None:
            log.error("signing_keys_reload_failed", error=str(exc), keeping=holder.signing_key.kid)

        await self.store.watch(apply, interval_s, report)

    @asynccontextmanager
    async def kept_current(self, holder: HoldsSigningKeys, interval_s: float = 1.0) -> AsyncIterator[None]:
        """``keep_current`` as a background task for the duration of the ``async with`` block."""
        task = asyncio.create_task(self.keep_current(holder, interval_s), name="signing-keys-watch")
        try:
            yield
        finally:
            await background.stop(task)


def load_signing_keys(settings: Settings, overlap_s: float | None = None) -> tuple[SigningKey, list[SigningKey]]:
    """The active signing key and the published ones: ``signing_key_file`` if set, else the key store."""
    return GatewaySigningKeys(settings, overlap_s).load()


def load_gateway_key(settings: Settings) -> SigningKey:
    """The key the gateway signs with now."""
    return load_signing_keys(settings)[0]


class KeyResolver(Protocol):
    def resolve(self, client_id: str, kid: str) -> PublicKey | None: ...


@dataclass(frozen=True)
class StaticClientKeys:
    """Client keys from config (PEM files and generated dev keys), indexed by (client, kid)."""

    by_client: Mapping[str, Mapping[str, PublicKey]]

    def resolve(self, client_id: str, kid: str) -> PublicKey | None:
        return self.by_client.get(client_id, {}).get(kid)

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticClientKeys:
        by_client: dict[str, dict[str, PublicKey]] = {}
        for client in settings.clients.values():
            public: list[PublicKey] = [keys.load_public_pem(p) for p in client.public_key_files]
            if client.dev_key:
                public.append(keys.load_or_create(dev_client_key_path(settings.state_dir, client.id)).public)
            by_client[client.id] = {keys.thumbprint(keys.public_jwk(k)): k for k in public}
        return cls(by_client)


@dataclass(frozen=True)
class ResolverChain:
    """Asks each resolver in turn; the first that knows the key wins."""

    resolvers: tuple[KeyResolver, ...]

    def resolve(self, client_id: str, kid: str) -> PublicKey | None:
        for resolver in self.resolvers:
            key = resolver.resolve(client_id, kid)
            if key is not None:
                return key
        return None
