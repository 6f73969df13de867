"""A real gateway on loopback in front of the four real simulators, with its own state directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gateway.client import GatewayClient
from gateway.config.settings import Settings, load
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path, load_gateway_key
from gateway.web.runner import RunningGateway, gateway_running
from simulators.population import Population
from simulators.servers import RunningSimulators, start_simulators

SEED = "gateway-tests"
HOUSEHOLDS = 5_000


@dataclass
class Stack:
    settings: Settings
    gateway: RunningGateway
    simulators: RunningSimulators
    population: Population
    client: GatewayClient

    def client_for(self, client_id: str) -> GatewayClient:
        key = keys.load_or_create(dev_client_key_path(self.settings.state_dir, client_id))
        return GatewayClient(self.gateway.url, client_id, key, self.settings.gateway_id)


def make_settings(state_dir: Path, timeout_s: float = 1.5) -> Settings:
    """The project settings with short timeouts; 1.5 s per backend call keeps a busy 2-core machine (other
    suites, a browser) from timing out healthy simulators, and stays well below the rogue modes' delays."""
    settings = load(env={"ANSS_GATEWAY_STATE_DIR": str(state_dir)})
    return replace(
        settings,
        idle_timeout_s=2.0,
        body_timeout_s=1.0,
        connectors=tuple(replace(c, timeout_s=timeout_s, connect_timeout_s=timeout_s) for c in settings.connectors),
    )


@asynccontextmanager
async def build_stack(tmp_path: Path, adjust: Callable[[Settings], Settings] | None = None,
                      tracer_provider: TracerProvider | None = None) -> AsyncIterator[Stack]:
    """The stack, optionally with adjusted settings (other rights, limits...)."""
    settings = make_settings(tmp_path / "state")
    if adjust is not None:
        settings = adjust(settings)
    population = Population(SEED, HOUSEHOLDS)
    gateway_key = load_gateway_key(settings)
    sims = await start_simulators(population, {gateway_key.kid: gateway_key.public})
    settings = settings.with_connector_urls(sims.urls)
    try:
        async with gateway_running(settings, port=0, tracer_provider=tracer_provider) as gw:
            key = keys.load_or_create(dev_client_key_path(settings.state_dir, "anss.asd"))
            async with GatewayClient(gw.url, "anss.asd", key, settings.gateway_id) as client:
                yield Stack(settings, gw, sims, population, client)
    finally:
        await sims.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with build_stack(tmp_path) as built:
        yield built
