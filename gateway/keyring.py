"""Which keys the gateway holds: its own signing key and every registered client's public keys.

Production keys come from PEM files named in config; development keys (the gateway's, and those of clients
marked ``dev_key``) are generated once under the state directory. Client keys are resolved by ``kid`` (the
RFC 7638 thumbprint) through a chain of resolvers, so partner JWKS fetchers can be added later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway import keys
from gateway.keys import PublicKey, SigningKey
from gateway.settings import Settings


def dev_client_key_path(state_dir: Path, client_id: str) -> Path:
    return state_dir / "clients" / f"{client_id}.pem"


def gateway_key_path(state_dir: Path) -> Path:
    return state_dir / "keys" / "gateway-signing.pem"


def load_gateway_key(settings: Settings) -> SigningKey:
    if settings.signing_key_file is not None:
        return keys.load_private_pem(settings.signing_key_file)
    return keys.load_or_create(gateway_key_path(settings.state_dir))


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
