"""A sixth administration from configuration alone: a third-party WSDL whose types come from a remote
``xsd:import``, resolved from a local copy listed in config — never the network."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from connectors.base import CallContext, Query, SourceNotFound
from connectors.soap import SoapConnector
from gateway.config.connectors import build_connectors, load_connector_file
from gateway.config.settings import ConfigError
from gateway.crypto import keys
from gateway.crypto.outbound import OutboundSigner
from tests.config_support import ROOT
from tests.connectors import third_party


@pytest.fixture
async def income_server() -> AsyncIterator[tuple[third_party.IncomeServer, str]]:
    backend = third_party.IncomeServer()
    server = TestServer(backend.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield backend, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def test_it_is_built_from_local_copies_and_answers(
    tmp_path: Path, income_server: tuple[third_party.IncomeServer, str]
) -> None:
    backend, url = income_server
    config = load_connector_file(third_party.write(tmp_path, url), {})
    connector = build_connectors([config], ROOT, resilient=False)["tax"]
    assert isinstance(connector, SoapConnector)
    assert connector.wsdl_loads == 2  # the WSDL and the local copy of its remote import, nothing else
    signer = OutboundSigner(keys.generate(), "anss-gateway", "men.bourses", "scholarship.eligibility")
    async with aiohttp.ClientSession() as session:
        ctx = CallContext(session, signer, "req-1", "men.bourses", "scholarship.eligibility")
        record = await connector.fetch(Query("income", {"idcs": "1000000001", "year": "2025"}), ctx)
        assert record.kind == "income" and record.source == "tax"
        assert dict(record.data) == {"idcs": "1000000001", "fiscal_year": "2025",
                                     "declared_income_mad": 48250.5, "filed_on": "2026-03-31"}
        with pytest.raises(SourceNotFound):
            await connector.fetch(Query("income", {"idcs": "1000000009", "year": "2025"}), ctx)
    assert backend.calls == 2 and all(a.startswith("Bearer ") for a in backend.authorizations)


def test_a_remote_import_without_a_local_copy_is_one_line_naming_it(tmp_path: Path) -> None:
    path = third_party.write(tmp_path, "http://127.0.0.1:9", with_copy=False)
    with pytest.raises(ConfigError) as caught:
        build_connectors([load_connector_file(path, {})], ROOT)
    message = str(caught.value)
    assert "\n" not in message
    assert re.match(rf"^{re.escape(str(path))}:\d+ ", message), message
    assert third_party.TYPES_URL in message and "options.imports" in message


def test_a_field_path_into_the_imported_types_is_checked(tmp_path: Path) -> None:
    path = third_party.write(tmp_path, "http://127.0.0.1:9")
    path.write_text(path.read_text(encoding="utf-8").replace('"statement.declaredIncome"', '"statement.income"'),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"statement\.income.*no such element.*declaredIncome"):
        build_connectors([load_connector_file(path, {})], ROOT)
