"""Verifying a citizen's token: an OIDC-style JWT signed by the configured identity provider.

The contract (docs/citizens.md, section 1): ``Authorization: Bearer <JWT>``, one header, a compact JWS
signed with one of ``[citizens] algorithms`` (EdDSA, ES256, RS256 — never ``none`` nor HS*) by the key of
the provider's JWKS named by ``kid``; claims ``iss`` (exactly the configured issuer), ``aud`` (the configured
audience, or a list holding it), ``sub``, ``iat`` and ``exp`` (NumericDates, ``exp - iat`` at most
``max_token_lifetime_s``), ``nbf`` if present, all checked with ``clock_leeway_s``; the citizen's IDCS in
``idcs_claim`` (10 digits) and, optionally, their CIN in ``cin_claim``. No ``crit`` header is understood,
so a token carrying one is refused. Any defect is a 401 ``citizen_token_invalid`` with
``WWW-Authenticate: Bearer``; the detail says what was wrong, never a claim's value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.citizen.jwks import JwksFile
from gateway.config.settings import CitizenSettings
from gateway.crypto.keys import b64url_decode
from gateway.errors import GatewayError, Unauthenticated

IDCS = re.compile(r"[0-9]{10}")
CIN = re.compile(r"[A-Z]{1,2}[0-9]{5,6}")
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
MAX_TOKEN_CHARS = 8192
REALM = "anss-gateway-citizens"


class CitizenTokenInvalid(Unauthenticated):
    """401 ``citizen_token_invalid``, with the RFC 6750 challenge."""

    default_code = "citizen_token_invalid"

    def __init__(self, detail: str, *, token_sent: bool = True) -> None:
        challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if token_sent else "")
        GatewayError.__init__(self, detail, None, {"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class Citizen:
    """Who the token says the citizen is (identifiers are never logged: only their pseudonyms)."""

    idcs: str
    cin: str | None = None

    def __repr__(self) -> str:  # never print identifiers by accident
        return "Citizen(<identifiers hidden>)"


def _bearer(values: list[str]) -> str:
    if not values:
        raise CitizenTokenInvalid("an `Authorization: Bearer <token>` header from the identity provider is required",
                                  token_sent=False)
    if len(values) > 1:
        raise CitizenTokenInvalid("send exactly one Authorization header")
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CitizenTokenInvalid("the Authorization header must be `Bearer <token>`")
    if len(token) > MAX_TOKEN_CHARS or not COMPACT_JWS.fullmatch(token):
        raise CitizenTokenInvalid("the token is not a compact JWS")
    return token


def _header(token: str) -> dict[str, Any]:
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CitizenTokenInvalid("the token's header is not JSON") from exc
    if not isinstance(header, dict):
        raise CitizenTokenInvalid("the token's header is not a JSON object")
    return header


def _numeric(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CitizenTokenInvalid(f"`{name}` must be a NumericDate (a number)")
    return float(value)


def _plain_dates(token: str) -> None:
    """``exp``, ``iat`` and ``nbf``, when present, are numbers (RFC 7519 NumericDate), never ``true``/``false``."""
    try:
        claims = json.loads(b64url_decode(token.split(".")[1]))
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise CitizenTokenInvalid("the token's claims are not JSON") from exc
    if not isinstance(claims, dict):
        raise CitizenTokenInvalid("the token's claims are not a JSON object")
    for name in ("exp", "iat", "nbf"):
        if name in claims:
            _numeric(claims, name)


class CitizenTokenVerifier:
    def __init__(self, config: CitizenSettings, keys: JwksFile) -> None:
        self.config = config
        self.keys = keys

    async def verify(self, authorization: list[str]) -> Citizen:
        """The citizen a valid token names; ``CitizenTokenInvalid`` for any defect."""
        config = self.config
        token = _bearer(authorization)
        header = _header(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in config.algorithms:
            raise CitizenTokenInvalid(f"the token must be signed with one of {list(config.algorithms)}")
        if "crit" in header:
            raise CitizenTokenInvalid("the token has critical header parameters this gateway does not understand")
        key = (await self.keys.keys()).get(kid) if isinstance(kid, str) else None
        if key is None:
            raise CitizenTokenInvalid("the token's kid names no key of the identity provider")
        if key.algorithm_name != alg:
            raise CitizenTokenInvalid("the token's algorithm is not the one of its key")
        required = ["iss", "aud", "sub", "iat", "exp", config.idcs_claim]
        _plain_dates(token)  # (PyJWT takes `true` for 1 and names its own errors only by their class)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=config.audience, issuer=config.issuer,
                leeway=config.clock_leeway_s, options={"require": required},
            )
        except jwt.InvalidSignatureError as exc:
            raise CitizenTokenInvalid("the token's signature does not verify") from exc
        except jwt.ExpiredSignatureError as exc:
            raise CitizenTokenInvalid("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise CitizenTokenInvalid("the token is not valid yet") from exc
        except jwt.InvalidIssuerError as exc:
            raise CitizenTokenInvalid("the token comes from another issuer") from exc
        except jwt.InvalidAudienceError as exc:
            raise CitizenTokenInvalid("the token is meant for another audience") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise CitizenTokenInvalid(f"the token lacks the `{exc.claim}` claim") from exc
        except jwt.exceptions.InvalidSubjectError as exc:
            raise CitizenTokenInvalid("`sub` must be a non-empty string") from exc
        except jwt.InvalidIssuedAtError as exc:
            raise CitizenTokenInvalid("`iat` must be a NumericDate (a number) not in the future") from exc
        except jwt.DecodeError as exc:
            raise CitizenTokenInvalid("the token is not a well-formed JWT (its segments or claims do not decode, "
                                      "or a NumericDate is not a number)") from exc
        except jwt.PyJWTError as exc:
            raise CitizenTokenInvalid("the token's claims are malformed") from exc
        return self._citizen(claims)

    def _citizen(self, claims: dict[str, Any]) -> Citizen:
        config = self.config
        issued, expires = _numeric(claims, "iat"), _numeric(claims, "exp")
        if "nbf" in claims:
            _numeric(claims, "nbf")
        if expires - issued > config.max_token_lifetime_s:
            raise CitizenTokenInvalid(f"the token may live at most {config.max_token_lifetime_s} s")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise CitizenTokenInvalid("`sub` must be a non-empty string")
        idcs = claims[config.idcs_claim]
        if not isinstance(idcs, str) or not IDCS.fullmatch(idcs):
            raise CitizenTokenInvalid(f"`{config.idcs_claim}` must be an IDCS (10 digits)")
        cin = claims.get(config.cin_claim) if config.cin_claim else None
        present = bool(config.cin_claim) and config.cin_claim in claims
        if present and (not isinstance(cin, str) or not CIN.fullmatch(cin)):  # (null is no CIN either)
            raise CitizenTokenInvalid(f"`{config.cin_claim}` must be a CIN (1–2 capital letters and 5–6 digits)")
        return Citizen(idcs, cin)
