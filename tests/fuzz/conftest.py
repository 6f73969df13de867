"""A real gateway on loopback in front of the four real simulators, served from a background thread.

Schemathesis and Hypothesis drive tests synchronously, so the servers run in their own event loop on a
daemon thread for the whole module; the tests talk to them over real HTTP like any client would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests

from gateway.config.refusals import RefusalSettings
from gateway.config.settings import Settings
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path, load_gateway_key
from gateway.crypto.keys import PublicKey, SigningKey, public_from_jwk
from gateway.web.runner import gateway_running
from simulators.population import Population
from simulators.servers import start_simulators
from tests.gateway.conftest import HOUSEHOLDS, SEED, make_settings

CLIENT_ID = "anss.asd"
START_TIMEOUT_S = 60.0


@dataclass
class LiveStack:
    """What a fuzz test needs to know about the running stack."""

    url: str
    settings: Settings
    population: Population
    client_key: SigningKey
    gateway_keys: dict[str, PublicKey]


class BackgroundStack:
    """Starts simulators and gateway in a thread with its own event loop; ``stop`` shuts them down cleanly."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.live: LiveStack | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-stack", daemon=True)

    def start(self) -> LiveStack:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the gateway stack did not start in time")
        if self._error is not None:
            raise RuntimeError("the gateway stack failed to start") from self._error
        assert self.live is not None
        return self.live

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # the fuzzers send thousands of refused requests from one address: they test what each answer says, so the
        # budget of anonymous refusals logged one by one (tests/gateway/test_floods.py tests it) must not run out
        settings = replace(make_settings(self.state_dir),
                           refusals=RefusalSettings(rate_per_s=1e6, burst=10**9, global_rate_per_s=1e6,
                                                    global_burst=10**9))
        population = Population(SEED, HOUSEHOLDS)
        gateway_key = load_gateway_key(settings)
        sims = await start_simulators(population, {gateway_key.kid: gateway_key.public})
        settings = settings.with_connector_urls(sims.urls)
        try:
            async with gateway_running(settings, port=0) as gw:
                client_key = keys.load_or_create(dev_client_key_path(settings.state_dir, CLIENT_ID))
                self.live = LiveStack(gw.url, settings, population, client_key, {})
                self._ready.set()
                await self._stop.wait()
        finally:
            await sims.stop()


def fetch_gateway_keys(url: str) -> dict[str, PublicKey]:
    document = requests.get(f"{url}/.well-known/jwks.json", timeout=10).json()
    return {k["kid"]: public_from_jwk(k) for k in document["keys"]}


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    background = BackgroundStack(tmp_path_factory.mktemp("fuzz") / "state")
    live = background.start()
    try:
        live.gateway_keys = fetch_gateway_keys(live.url)
        yield live
    finally:
        background.stop()
