"""``[citizens]`` in gateway.toml: the identity provider whose tokens citizens present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.toml import ConfigError, get, line_of, resolve

CITIZEN_ALGORITHMS = ("EdDSA", "ES256", "RS256")  # asymmetric only: never `none`, never HS*

@dataclass(frozen=True)
class CitizenSettings:
    """``[citizens]``: the identity provider whose tokens citizens present to ``GET /v1/citizen/access-log``."""

    issuer: str = "urn:anss:dev-identity-provider"
    audience: str = "anss-gateway-citizens"
    jwks_file: Path | None = None  # the provider's public keys on disk; None: the dev provider under state_dir
    algorithms: tuple[str, ...] = CITIZEN_ALGORITHMS
    clock_leeway_s: int = 60
    max_token_lifetime_s: int = 3600  # `exp` - `iat` at most this
    idcs_claim: str = "idcs"
    cin_claim: str | None = "cin"  # optional claim; None: not read
    show_consent_evidence: bool = True  # a consent's evidence reference is shown to the citizen it is about
    jwks_setting: str = "[citizens] jwks_file"  # where jwks_file was configured (file:line), for error messages

def load_citizens(path: Path, table: Mapping[str, Any], config_dir: Path) -> CitizenSettings:
    """``[citizens]`` (docs/citizens.md): the identity provider of citizens' tokens, checked at file:line."""
    where = f"{path} [citizens]"

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{line_of(path, key, after='[citizens]')} {where}: {message}")

    defaults = CitizenSettings()
    issuer = get(table, "issuer", str, where, defaults.issuer)
    audience = get(table, "audience", str, where, defaults.audience)
    for key, value in (("issuer", issuer), ("audience", audience)):
        if not value.strip() or value != value.strip():
            raise fail(key, f"`{key}` must be a non-empty string without surrounding blanks")
    algorithms = tuple(get(table, "algorithms", list, where, list(defaults.algorithms)))
    refused = [a for a in algorithms if a not in CITIZEN_ALGORITHMS]
    if refused or not algorithms:
        raise fail("algorithms", f"`algorithms` must name some of {list(CITIZEN_ALGORITHMS)} (asymmetric "
                                 f"signatures only; refused: {refused or 'an empty list'})")
    leeway = get(table, "clock_leeway_s", int, where, defaults.clock_leeway_s)
    if not 0 <= leeway <= 300:
        raise fail("clock_leeway_s", "`clock_leeway_s` must be between 0 and 300")
    lifetime = get(table, "max_token_lifetime_s", int, where, defaults.max_token_lifetime_s)
    if not 60 <= lifetime <= 86400:
        raise fail("max_token_lifetime_s", "`max_token_lifetime_s` must be between 60 and 86400")
    claims = {}
    for key, default in (("idcs_claim", defaults.idcs_claim), ("cin_claim", defaults.cin_claim)):
        claims[key] = get(table, key, str, where, default)
        if key == "idcs_claim" and not claims[key]:
            raise fail(key, "`idcs_claim` must name the claim that carries the citizen's IDCS")
        if claims[key] in ("iss", "aud", "exp", "nbf", "iat", "sub", "jti"):
            raise fail(key, f"`{key}` cannot be the registered claim {claims[key]!r}")
    if claims["idcs_claim"] == claims["cin_claim"]:
        raise fail("cin_claim", "`cin_claim` must differ from `idcs_claim`")
    jwks_file = get(table, "jwks_file", str, where, "")
    return CitizenSettings(
        issuer=issuer, audience=audience, jwks_file=resolve(config_dir, jwks_file), algorithms=algorithms,
        clock_leeway_s=leeway, max_token_lifetime_s=lifetime, idcs_claim=claims["idcs_claim"],
        cin_claim=claims["cin_claim"] or None,
        show_consent_evidence=get(table, "show_consent_evidence", bool, where, defaults.show_consent_evidence),
        jwks_setting=f"{line_of(path, 'jwks_file', after='[citizens]')} [citizens] jwks_file",
    )
