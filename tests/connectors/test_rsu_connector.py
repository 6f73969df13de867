"""The RSU, a fifth administration by configuration alone: config/connectors/social_registry.toml against the
RSU simulator on loopback — no Python for it in connectors/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from connectors.base import CallContext, Query, SourceNotFound
from connectors.rest import RestConnector
from gateway.config.connectors import load_connector_file
from gateway.crypto import keys
from gateway.crypto.outbound import OutboundSigner
from simulators import social_registry
from simulators.common import AUDIENCES, SimulatorContext
from simulators.population import Population

ROOT = Path(__file__).resolve().parents[2]
POP = Population("test-seed", 2000)
ASD_THRESHOLD = 9.743001


@pytest.fixture
async def rsu() -> AsyncIterator[tuple[RestConnector, CallContext, SimulatorContext]]:
    key = keys.generate()
    sim = SimulatorContext(POP, {key.kid: key.public}, AUDIENCES["social_registry"])
    server = TestServer(social_registry.build_app(sim), host="127.0.0.1")
    await server.start_server()
    config = load_connector_file(ROOT / "config" / "connectors" / "social_registry.toml", {})
    connector = RestConnector(replace(config, base_url=f"http://127.0.0.1:{server.port}"), ROOT)
    async with aiohttp.ClientSession() as session:
        signer = OutboundSigner(key, "anss-gateway", "anss.asd", "asd.eligibility")
        yield connector, CallContext(session, signer, "req-rsu", "anss.asd", "asd.eligibility"), sim
    await server.close()


def test_no_python_module_exists_for_it() -> None:
    assert not (ROOT / "connectors" / "social_registry.py").exists()
    assert load_connector_file(ROOT / "config" / "connectors" / "social_registry.toml", {}).mapping is None


async def test_a_registered_household_is_its_canonical_record(
    rsu: tuple[RestConnector, CallContext, SimulatorContext]
) -> None:
    connector, ctx, _sim = rsu
    for fixture in ("amo_tadamon", "salaried_parent", "elderly_couple"):
        household = POP.fixture(fixture)
        expected = POP.social_registration(household.mother.idcs)
        assert expected is not None
        record = await connector.fetch(Query("social_registration", {"idcs": household.mother.idcs}), ctx)
        assert record.kind == "social_registration" and record.source == "social_registry"
        assert dict(record.data) == {
            "idcs": household.mother.idcs, "household_id": expected.household_id,
            "registration_date": expected.registered_on.isoformat(), "last_update": expected.updated_on.isoformat(),
            "region": expected.region, "members": list(expected.members),
            "socio_economic_index": expected.socio_economic_index}
    above = await connector.fetch(Query("social_registration", {"idcs": POP.fixture("salaried_parent").father.idcs}),
                                  ctx)
    assert above.data["socio_economic_index"] > ASD_THRESHOLD  # household 2 is registered above the threshold


async def test_a_household_not_in_the_rsu_is_not_found(
    rsu: tuple[RestConnector, CallContext, SimulatorContext]
) -> None:
    connector, ctx, sim = rsu
    with pytest.raises(SourceNotFound):
        await connector.fetch(Query("social_registration", {"idcs": POP.fixture("not_in_rsu").father.idcs}), ctx)
    assert sim.control.calls == 1
