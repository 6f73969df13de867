"""The administrations follow the gateway's JWKS: ``keys rotate`` needs no restart anywhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.crypto import keys
from gateway.web.state import RUNTIME
from simulators.gateway_keys import GatewayKeys
from tests.gateway.conftest import build_stack


async def test_a_rotated_signing_key_keeps_every_source_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with build_stack(tmp_path) as stack:
        stack.simulators.follow_jwks(f"{stack.gateway.url}/.well-known/jwks.json")
        runtime = stack.gateway.runner.app[RUNTIME]
        before = runtime.signing_key.kid
        idcs = stack.population.fixture("amo_tadamon").father.idcs
        assert (await stack.client.verify({"idcs": idcs}, "asd.eligibility", "CASE-ROT-1")).status == 200

        monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(stack.settings.state_dir))
        assert await asyncio.to_thread(main, ["keys", "rotate"]) == 0
        for _ in range(50):  # the gateway picks the new key up within about a second
            if runtime.signing_key.kid != before:
                break
            await asyncio.sleep(0.1)
        assert runtime.signing_key.kid != before
        assert runtime.signing_key.kid not in stack.simulators.gateway_keys.known

        answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", "CASE-ROT-2")
        assert answer.status == 200
        document = answer.json()
        assert {s["status"] for s in document["sources"]} == {"ok"}, document["sources"]
        assert all(c["status"] == "verified" for c in document["checks"].values())
        assert runtime.signing_key.kid in stack.simulators.gateway_keys.known
        assert stack.simulators.gateway_keys.fetches == 1  # one fetch for all the simulators


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval() -> None:
    now = [0.0]
    cache = GatewayKeys({}, min_refresh_s=5.0, clock=lambda: now[0])
    cache.follow("http://127.0.0.1:9/.well-known/jwks.json")  # nothing listens: every fetch fails
    for kid in ("a", "b", "c"):
        assert await cache.key(kid) is None
    assert cache._last_try == 0.0
    now[0] = 5.0
    assert await cache.key("d") is None and cache._last_try == 5.0


async def test_without_a_jwks_the_seed_keys_are_used() -> None:
    key = keys.generate()
    cache = GatewayKeys({key.kid: key.public})
    assert await cache.key(key.kid) == key.public and await cache.key("other") is None and cache.fetches == 0
