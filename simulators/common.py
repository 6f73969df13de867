"""What every simulator shares: its context (population, trusted gateway keys, audience) and test controls.

``SimulatorControl`` lets tests and benchmarks make an administration slow or broken on purpose; it is
part of the simulators, never of the gateway.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from gateway.crypto.keys import PublicKey
from gateway.crypto.outbound import OutboundAuthError, SeenTokens, verify_outbound
from simulators.gateway_keys import GatewayKeys
from simulators.population import Population
from simulators.rogue import ROGUE_MODES


@dataclass
class SimulatorControl:
    """Mutable knobs: ``delay_s`` before answering; ``fail`` answers 503 ("temporarily unavailable": a JSON
    error for REST, a Server fault for SOAP); ``rogue`` names a misbehaviour (see ``simulators.rogue``)
    to answer with, once the call's signature checked out, instead of the real answer.

    Counters: ``calls`` received, and ``max_in_flight`` — the most signed calls ever served at once, which
    lets tests prove the gateway's fan-out is concurrent without timing anything; ``open_streams`` and
    ``streamed_bytes`` — the rogue streams still being written, and every byte they wrote, which lets
    tests prove the gateway hung up on an endless answer.
    """

    delay_s: float = 0.0
    fail: bool = False
    rogue: str | None = None
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    open_streams: int = 0
    streamed_bytes: int = 0

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "rogue" and value is not None and value not in ROGUE_MODES:
            raise ValueError(f"unknown rogue mode {value!r}; one of {sorted(ROGUE_MODES)}")
        super().__setattr__(name, value)

    @contextmanager
    def track(self) -> Iterator[None]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1


@dataclass(frozen=True)
class SimulatorContext:
    """``trusted_keys``: the gateway's public keys — a fixed mapping (kid → key), or a ``GatewayKeys`` that
    follows the gateway's JWKS (``start_simulators`` shares one among the simulators)."""

    population: Population
    trusted_keys: Mapping[str, PublicKey] | GatewayKeys
    audience: str
    control: SimulatorControl = field(default_factory=SimulatorControl)
    issuer: str | None = None  # the gateway id a call's `iss` must be (None: not checked, for hand-built tests)
    keys: GatewayKeys = field(init=False, repr=False, compare=False)
    seen: SeenTokens = field(default_factory=SeenTokens, repr=False, compare=False)  # jti used: a replay

    def __post_init__(self) -> None:
        given = self.trusted_keys
        object.__setattr__(self, "keys", given if isinstance(given, GatewayKeys) else GatewayKeys(given))


CONTEXT: web.AppKey[SimulatorContext] = web.AppKey("simulator_context", SimulatorContext)

AUDIENCES = {
    "civil_registry": "rnp.etat-civil",
    "education": "men.massar",
    "health": "cnss.amo",
    "employment": "cnss.declarations",
    "social_registry": "anr.rsu",
}


async def check_signature(request: web.Request, body: bytes) -> dict[str, Any]:
    """Verify the gateway's signature on this call; raises ``OutboundAuthError``."""
    ctx = request.app[CONTEXT]
    authorization = request.headers.get("Authorization")
    key = await ctx.keys.key(unverified_kid(authorization))
    return verify_outbound(authorization, request.method, request.path_qs, body, ctx.audience,
                           {} if key is None else {unverified_kid(authorization): key}, issuer=ctx.issuer,
                           seen=ctx.seen)


def unverified_kid(authorization: str | None) -> str:
    """The ``kid`` a bearer token names (not trusted: it only picks the key to check the token with)."""
    if not authorization or not authorization.startswith("Bearer "):
        return ""
    try:
        return str(jwt.get_unverified_header(authorization[len("Bearer "):]).get("kid", ""))
    except jwt.PyJWTError:
        return ""


__all__ = ["AUDIENCES", "CONTEXT", "OutboundAuthError", "SimulatorContext", "SimulatorControl", "check_signature"]
