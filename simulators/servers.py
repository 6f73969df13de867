"""Starts the five administrations as real HTTP servers on loopback (``anss-gateway simulate``, demo, tests).

Each administration gets its own server and port, trusts the gateway's public signing key(s), and checks
every call's signature against its own audience.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from gateway.crypto.keys import PublicKey
from simulators import civil_registry, education, employment, health, social_registry
from simulators.common import AUDIENCES, SimulatorContext, SimulatorControl
from simulators.gateway_keys import GatewayKeys
from simulators.population import Population

BUILDERS: dict[str, Callable[[SimulatorContext], web.Application]] = {
    "civil_registry": civil_registry.build_app,
    "education": education.build_app,
    "health": health.build_app,
    "employment": employment.build_app,
    "social_registry": social_registry.build_app,
}
DEFAULT_PORTS = {"civil_registry": 8101, "education": 8102, "health": 8103, "employment": 8104,
                 "social_registry": 8105}


@dataclass
class RunningSimulators:
    urls: dict[str, str] = field(default_factory=dict)
    controls: dict[str, SimulatorControl] = field(default_factory=dict)
    runners: list[web.AppRunner] = field(default_factory=list)
    gateway_keys: GatewayKeys = field(default_factory=lambda: GatewayKeys({}))

    def follow_jwks(self, jwks_url: str) -> None:
        """The simulators follow the gateway's JWKS from now on (``keys rotate`` needs no restart)."""
        self.gateway_keys.follow(jwks_url)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()


async def start_simulators(
    population: Population,
    trusted_keys: Mapping[str, PublicKey],
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    issuer: str | None = None,
) -> RunningSimulators:
    """Start all five; ``ports`` of 0 (the default when ``ports`` is None) pick free ports."""
    running = RunningSimulators()
    running.gateway_keys = GatewayKeys(trusted_keys)  # one cache for all: they follow one gateway
    try:
        for name, builder in BUILDERS.items():
            control = SimulatorControl()
            app = builder(SimulatorContext(population, running.gateway_keys, AUDIENCES[name], control, issuer))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            running.runners.append(runner)
            site = web.TCPSite(runner, host, (ports or {}).get(name, 0))
            await site.start()
            port = runner.addresses[0][1]
            running.urls[name] = f"http://{host}:{port}"
            running.controls[name] = control
    except BaseException:
        await running.stop()
        raise
    return running
