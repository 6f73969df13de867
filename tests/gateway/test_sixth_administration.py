"""A sixth administration added by configuration alone — a third-party-style WSDL whose types are a remote
``xsd:import`` (local copy listed in its TOML), from files written by this test — and called by a ministry
through ``/v1/services`` on the real gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from gateway.config.clients import ServiceRight
from gateway.config.connectors import load_connector_file
from gateway.config.purposes import Purpose
from gateway.config.services import Service
from gateway.config.settings import Settings
from tests.connectors import third_party
from tests.consent.conftest import last_entry
from tests.gateway.conftest import Stack, build_stack

PURPOSE = "ms.indigence-check"


@pytest.fixture
async def tax_stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, third_party.IncomeServer]]:
    backend = third_party.IncomeServer()
    server = TestServer(backend.app(), host="127.0.0.1")
    await server.start_server()
    toml = third_party.write(tmp_path / "dgi", f"http://127.0.0.1:{server.port}")

    def adjust(settings: Settings) -> Settings:
        ms = settings.clients["ms.deces"]
        purpose = Purpose(PURPOSE, "Free hospital care — the patient's declared income", "statute",
                          "Loi n° 65-00 portant code de la couverture médicale de base", ())
        return replace(
            settings,
            connectors=(*settings.connectors, load_connector_file(toml, {})),
            services={**settings.services, "dgi.income": Service("dgi.income", "tax", "income", "DGI — income")},
            purposes={**settings.purposes, PURPOSE: purpose},
            clients={**settings.clients, "ms.deces": replace(
                ms, services=(*ms.services, ServiceRight("dgi.income", PURPOSE, frozenset({"filed_on"}))))},
        )

    try:
        async with build_stack(tmp_path, adjust) as stack:
            yield stack, backend
    finally:
        await server.close()


async def test_a_sixth_administration_is_called_through_the_services_api(
    tax_stack: tuple[Stack, third_party.IncomeServer]
) -> None:
    stack, backend = tax_stack
    async with stack.client_for("ms.deces") as ms:
        listed = (await ms.request("GET", "/v1/services")).json()["services"]
        assert [s["service"] for s in listed] == ["dgi.income", "rnp.person"]
        described = await ms.request("GET", "/v1/services/dgi.income")
        assert described.status == 200
        assert described.json()["components"]["schemas"]["Record"]["title"] == "Income record"
        answer = await ms.request("POST", "/v1/services/dgi.income", {
            "purpose": PURPOSE, "case_ref": "CHU-RABAT-2026-5", "params": {"idcs": "1000000001", "year": "2025"}})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["record"] == {"idcs": "1000000001", "fiscal_year": "2025", "declared_income_mad": 48250.5}
    assert body["withheld"] == ["filed_on"] and body["provider"] == "tax"
    assert backend.calls == 1 and backend.authorizations[0].startswith("Bearer ")
    entry = last_entry(stack)
    assert "1000000001" not in json.dumps(entry) and "48250" not in json.dumps(entry)
    assert entry["detail"]["service"] == "dgi.income" and entry["sources"] == [{"name": "tax", "status": "ok"}]
