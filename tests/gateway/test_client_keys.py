"""Clients registered with PEM public keys (the production path), ES256 as well as EdDSA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.client import GatewayClient
from gateway.config.settings import ClientSettings, Right
from gateway.crypto import keys
from gateway.crypto.keyring import load_gateway_key
from gateway.web.runner import gateway_running
from simulators.population import Population
from simulators.servers import start_simulators
from tests.gateway.conftest import HOUSEHOLDS, SEED, make_settings


@pytest.fixture
async def ministry(tmp_path: Path) -> AsyncIterator[tuple[str, keys.SigningKey, keys.SigningKey, Population]]:
    es_key, ed_key = keys.generate("ES256"), keys.generate("EdDSA")
    pems = []
    for name, key in (("es.pem", es_key), ("ed.pem", ed_key)):
        (tmp_path / name).write_bytes(keys.public_pem(key.public))
        pems.append(tmp_path / name)
    settings = make_settings(tmp_path / "state")
    client = ClientSettings("men.partner", "Ministry partner", tuple(pems), dev_key=False,
                            rights=(Right("asd.eligibility", frozenset({"identity"})),))
    settings = replace(settings, clients={**settings.clients, client.id: client})
    population = Population(SEED, HOUSEHOLDS)
    gateway_key = load_gateway_key(settings)
    sims = await start_simulators(population, {gateway_key.kid: gateway_key.public})
    try:
        async with gateway_running(settings.with_connector_urls(sims.urls), port=0) as gw:
            yield gw.url, es_key, ed_key, population
    finally:
        await sims.stop()
    assert not (tmp_path / "state" / "clients" / "men.partner.pem").exists(), "no dev key for a PEM client"


async def test_pem_registered_client_with_either_key(
    ministry: tuple[str, keys.SigningKey, keys.SigningKey, Population],
) -> None:
    url, es_key, ed_key, population = ministry
    idcs = population.fixture("amo_tadamon").father.idcs
    for key in (es_key, ed_key):
        async with GatewayClient(url, "men.partner", key) as client:
            answer = await client.verify({"idcs": idcs}, "asd.eligibility", "MEN-1", ["identity"])
            assert answer.status == 200, answer.json()
            assert answer.signature_header is not None
            refused = await client.verify({"idcs": idcs}, "asd.eligibility", "MEN-2", ["schooling"])
            assert refused.status == 403 and refused.json()["code"] == "forbidden_check"
    async with GatewayClient(url, "men.partner", keys.generate("ES256")) as stranger:
        answer = await stranger.verify({"idcs": idcs}, "asd.eligibility", "MEN-3", ["identity"])
        assert answer.status == 401 and answer.json()["code"] == "invalid_assertion"
