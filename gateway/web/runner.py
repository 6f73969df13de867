"""Running the gateway (and, in development, the simulators) inside one event loop until told to stop."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from gateway import console
from gateway.config.settings import Settings, SimulatorSettings
from gateway.crypto.keyring import load_signing_keys
from gateway.web.app import create_app
from gateway.web.protocol import GatewayRunner
from simulators.population import Population
from simulators.servers import DEFAULT_PORTS, RunningSimulators, start_simulators


@dataclass
class RunningGateway:
    url: str
    runner: web.AppRunner
    settings: Settings


@asynccontextmanager
async def gateway_running(settings: Settings, port: int | None = None,
                          ssl_context: ssl.SSLContext | None = None,
                          tracer_provider: TracerProvider | None = None) -> AsyncIterator[RunningGateway]:
    """The gateway listening on ``settings.host``; over TLS (``https``) when given an ``ssl_context``."""
    app = create_app(settings, tracer_provider)
    runner = GatewayRunner(app, access_log=None, shutdown_timeout=10)  # parser refusals answered our way
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port if port is None else port, ssl_context=ssl_context)
        await site.start()
        bound = runner.addresses[0][1]
        scheme = "https" if ssl_context is not None else "http"
        yield RunningGateway(f"{scheme}://{settings.host}:{bound}", runner, settings)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def simulators_running(settings: Settings, free_ports: bool) -> AsyncIterator[RunningSimulators]:
    """The five simulators, trusting this gateway's published signing keys (from the same state directory) and
    its id as the calls' issuer; once told the gateway's JWKS (``RunningSimulators.follow_jwks``) they follow it,
    so ``keys rotate`` needs no restart of them."""
    _active, published = load_signing_keys(settings)
    population = Population(settings.simulators.seed, settings.simulators.households)
    base = settings.simulators.base_port
    ports = None if free_ports else {name: base + i for i, name in enumerate(DEFAULT_PORTS)}
    sims = await start_simulators(population, {k.kid: k.public for k in published}, settings.simulators.host, ports,
                                  issuer=settings.gateway_id)
    try:
        yield sims
    finally:
        await sims.stop()


def simulated_urls(urls: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """The simulator URLs to use: an explicit ``ANSS_GATEWAY_CONNECTOR_<NAME>_URL`` wins over that simulator,
    so one real administration can be tried beside the simulated others."""
    return {name: url for name, url in urls.items() if not env.get(f"ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL")}


def following_base_port(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """Under plain ``serve``: the connectors still at their shipped simulator URL follow a non-default simulator
    base port (``ANSS_GATEWAY_SIMULATOR_BASE_PORT``, ``[simulators] base_port``), so ``simulate`` in one terminal
    and ``serve`` in another agree. A connector given its own URL (in its file or its environment variable)
    keeps it."""
    base, host = settings.simulators.base_port, settings.simulators.host
    if base == SimulatorSettings().base_port:
        return {}
    configured = {c.name: c.base_url for c in settings.connectors}
    moved: dict[str, str] = {}
    for offset, (name, default_port) in enumerate(DEFAULT_PORTS.items()):
        if env.get(f"ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL") or name not in configured:
            continue
        if configured[name] in (f"http://{host}:{default_port}", f"http://127.0.0.1:{default_port}"):
            moved[name] = f"http://{host}:{base + offset}"
    return moved


def settle_heap() -> int:
    """Once a long-running process is up: what start-up built (WSDLs, schemas, settings, checks, keys) lives as
    long as the process, so it is taken out of the cyclic collector's reach (``gc.freeze``, after one collection
    of start-up's own garbage). Under load a full collection then scans only what requests created: it paused the
    event loop for about 75 ms every couple of seconds (bench/README.md: the answers' p99 fell by a fifth).
    Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(settings: Settings, with_simulators: bool, ssl_context: ssl.SSLContext | None = None) -> None:
    if with_simulators:
        async with simulators_running(settings, free_ports=False) as sims:
            settings = settings.with_connector_urls(simulated_urls(sims.urls, os.environ))
            async with gateway_running(settings, ssl_context=ssl_context) as gw:
                sims.follow_jwks(f"{gw.url}/.well-known/jwks.json")  # like a real administration: no restart
                print(f"simulators: {sims.urls}", flush=True)
                print(f"gateway listening on {gw.url}", flush=True)
                print("\n".join(console.banner(gw.runner.app, gw.url)), flush=True)
                settle_heap()
                await wait_for_signal()
    else:
        moved = following_base_port(settings, os.environ)
        if moved:
            settings = settings.with_connector_urls(moved)
            print(f"connectors follow the simulator base port {settings.simulators.base_port}: {moved}", flush=True)
        async with gateway_running(settings, ssl_context=ssl_context) as gw:
            print(f"gateway listening on {gw.url}", flush=True)
            print("\n".join(console.banner(gw.runner.app, gw.url)), flush=True)
            settle_heap()
            await wait_for_signal()


async def simulate(settings: Settings) -> None:
    async with simulators_running(settings, free_ports=False) as sims:
        # the gateway this configuration describes (plain `serve`, possibly started later): follow its JWKS
        sims.follow_jwks(f"http://{settings.host}:{settings.port}/.well-known/jwks.json")
        for name, url in sims.urls.items():
            print(f"{name}: {url}", flush=True)
        await wait_for_signal()
