"""The SOAP connector kind against the civil registry and AMO simulators (and rogue backends) on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped,unused-ignore]
from lxml import etree

from connectors import registry
from connectors.base import (
    CallContext,
    Connector,
    ConnectorConfig,
    Query,
    Record,
    SourceMalformed,
    SourceNotFound,
    SourceRejected,
    SourceTimeout,
    SourceUnavailable,
)
from connectors.soap import SoapConnector
from gateway.config.connectors import load_connector_file
from gateway.crypto import keys
from gateway.crypto.outbound import OutboundSigner
from simulators import civil_registry as rnp
from simulators import health as amo
from simulators.common import AUDIENCES, SimulatorContext
from simulators.population import FIXTURE_NAMES, Person, Population

ROOT = Path(__file__).resolve().parents[2]
POP = Population("test-seed", 2000)
SOMEONE = POP.fixture("amo_tadamon").father.idcs
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_config(name: str) -> ConnectorConfig:
    return load_connector_file(ROOT / "config" / "connectors" / f"{name}.toml", {})


def base_url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


def iso(d: Any) -> str | None:
    return None if d is None else str(d.isoformat())


def person_data(p: Person) -> dict[str, Any]:
    return {
        "idcs": p.idcs, "cin": p.cin, "first_name": p.first_name, "first_name_ar": p.first_name_ar,
        "last_name": p.last_name, "last_name_ar": p.last_name_ar, "sex": p.sex,
        "birth_date": p.birth_date.isoformat(), "alive": p.alive, "death_date": iso(p.death_date),
        "father_idcs": p.father_idcs, "mother_idcs": p.mother_idcs,
    }


def member_data(p: Person) -> dict[str, Any]:
    return {
        "idcs": p.idcs, "first_name": p.first_name, "last_name": p.last_name, "sex": p.sex,
        "birth_date": p.birth_date.isoformat(), "alive": p.alive, "death_date": iso(p.death_date),
    }


def fault_of(body: bytes) -> tuple[str, str]:
    root = etree.fromstring(body)
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or ""


def envelope(operation: str, namespace: str, inner: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f'<o:{operation} xmlns:o="{namespace}">{inner}</o:{operation}>'
            "</soap:Body></soap:Envelope>").encode()


class Backend:
    """A simulator served on a free loopback port, and a connector configured for it."""

    def __init__(self, ctx: SimulatorContext, server: TestServer, config: ConnectorConfig) -> None:
        self.ctx, self.server, self.config = ctx, server, config
        self.url = base_url(server)
        self.connector = SoapConnector(config, ROOT)

    def with_config(self, **overrides: Any) -> SoapConnector:
        return SoapConnector(replace(self.config, **overrides), ROOT)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def simulator(name: str, build: Callable[[SimulatorContext], web.Application],
                    key: keys.SigningKey) -> AsyncIterator[Backend]:
    ctx = SimulatorContext(POP, {key.kid: key.public}, AUDIENCES[name])
    async with serve(build(ctx)) as server:
        yield Backend(ctx, server, replace(load_config(name), base_url=base_url(server)))


@asynccontextmanager
async def rogue(handler: Handler, **overrides: Any) -> AsyncIterator[SoapConnector]:
    """A backend that answers every path with ``handler``, behind a civil-registry-shaped connector."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve(app) as server:
        config = replace(load_config("civil_registry"), base_url=base_url(server), **overrides)
        yield SoapConnector(config, ROOT)


@pytest.fixture
def key() -> keys.SigningKey:
    return keys.generate()


@pytest.fixture
def signer(key: keys.SigningKey) -> OutboundSigner:
    return OutboundSigner(key, "anss-gateway", "anss.asd", "asd.eligibility")


@pytest.fixture
async def call_ctx(signer: OutboundSigner) -> AsyncIterator[CallContext]:
    async with aiohttp.ClientSession() as session:
        yield CallContext(session, signer, "req-test", "anss.asd", "asd.eligibility")


@pytest.fixture
async def civil(key: keys.SigningKey) -> AsyncIterator[Backend]:
    async with simulator("civil_registry", rnp.build_app, key) as backend:
        yield backend


@pytest.fixture
async def health(key: keys.SigningKey) -> AsyncIterator[Backend]:
    async with simulator("health", amo.build_app, key) as backend:
        yield backend


SCHEMAS = {
    kind: Draft202012Validator(json.loads((ROOT / "schemas" / "records" / f"{kind}.json").read_text()),
                               format_checker=FormatChecker())
    for kind in ("person", "family", "coverage")
}


def check(record: Record) -> dict[str, Any]:
    errors = [e.message for e in SCHEMAS[record.kind].iter_errors(record.data)]
    assert errors == [], errors
    return dict(record.data)


# ---------------------------------------------------------------- answers match the population


async def test_person_by_idcs_and_by_cin_match_the_population(civil: Backend, call_ctx: CallContext) -> None:
    household = POP.fixture("deceased_father")
    father, mother, child = household.father, household.mother, household.children[0]
    record = await civil.connector.fetch(Query("person", {"idcs": father.idcs}), call_ctx)
    assert (record.source, record.kind) == ("civil_registry", "person")
    data = check(record)
    assert data == person_data(father)
    assert data["alive"] is False and data["death_date"] == father.death_date.isoformat()  # type: ignore[union-attr]

    assert mother.cin is not None
    by_cin = check(await civil.connector.fetch(Query("person", {"cin": mother.cin}), call_ctx))
    assert by_cin == person_data(mother)
    assert by_cin["first_name_ar"] == mother.first_name_ar  # Arabic script survives the round trip

    minor = check(await civil.connector.fetch(Query("person", {"idcs": child.idcs}), call_ctx))
    assert minor == person_data(child)
    assert minor["cin"] is None
    assert (minor["father_idcs"], minor["mother_idcs"]) == (father.idcs, mother.idcs)


@pytest.mark.parametrize(("written", "read"), [("true", True), ("1", True), (" true ", True), ("True", None),
                                               ("yes", None), ("vrai", None), ("", None)])
async def test_a_boolean_is_read_as_xml_schema_writes_it(civil: Backend, call_ctx: CallContext, written: str,
                                                         read: bool | None) -> None:
    """xs:boolean is true, false, 1 or 0 (whitespace collapsed): zeep alone reads ``True`` as false, which
    would make a living person dead. The real registry's answer, its ``alive`` rewritten, through a proxy."""
    living = next(p for p in POP.fixture("amo_tadamon").members if p.alive)

    async def proxy(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session, session.post(
                civil.url + request.path, data=await request.read(), headers={
                    k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}) as up:
            body = (await up.read()).decode()
            changed = re.sub(r"(<(?:\w+:)?alive>)true(</)", rf"\g<1>{written}\g<2>", body)
            assert changed != body or written == "true"
            return web.Response(status=up.status, body=changed.encode(), content_type="text/xml")

    async with rogue(proxy) as connector:
        query = Query("person", {"idcs": living.idcs})
        if read is None:
            with pytest.raises(SourceMalformed):
                await connector.fetch(query, call_ctx)
        else:
            assert check(await connector.fetch(query, call_ctx))["alive"] is read


async def test_every_fixture_person_round_trips(civil: Backend, call_ctx: CallContext) -> None:
    people = [p for name in FIXTURE_NAMES for p in POP.fixture(name).members]
    records = await asyncio.gather(*(civil.connector.fetch(Query("person", {"idcs": p.idcs}), call_ctx)
                                     for p in people))
    assert [check(r) for r in records] == [person_data(p) for p in people]


async def test_family_of_fixture_households(civil: Backend, call_ctx: CallContext) -> None:
    for name in FIXTURE_NAMES:
        h = POP.fixture(name)
        for subject, spouse in ((h.father, h.mother), (h.mother, h.father)):
            data = check(await civil.connector.fetch(Query("family", {"idcs": subject.idcs}), call_ctx))
            assert data == {"idcs": subject.idcs, "spouses": [member_data(spouse)],
                            "children": [member_data(c) for c in h.children]}, name
    h = POP.fixture("deceased_father")
    widow = check(await civil.connector.fetch(Query("family", {"idcs": h.mother.idcs}), call_ctx))
    assert widow["spouses"][0]["alive"] is False
    child = check(await civil.connector.fetch(Query("family", {"idcs": h.children[0].idcs}), call_ctx))
    assert child == {"idcs": h.children[0].idcs, "spouses": [], "children": []}


async def test_coverage_of_fixtures(health: Backend, call_ctx: CallContext) -> None:
    async def coverage(idcs: str) -> dict[str, Any]:
        return check(await health.connector.fetch(Query("coverage", {"idcs": idcs}), call_ctx))

    tadamon = POP.fixture("amo_tadamon")
    assert await coverage(tadamon.father.idcs) == {
        "idcs": tadamon.father.idcs, "scheme": "amo_tadamon", "status": "active", "since": "2023-01-01",
        "severe_disability": False}
    salaried = POP.fixture("salaried_parent")
    data = await coverage(salaried.children[0].idcs)
    assert (data["scheme"], data["status"], data["since"]) == ("amo_contributory", "active", "2021-04-01")
    disabled = POP.fixture("disabled_child").children[0]
    assert (await coverage(disabled.idcs))["severe_disability"] is True
    deceased = POP.fixture("deceased_father").father
    assert (await coverage(deceased.idcs))["status"] == "inactive"
    for name in FIXTURE_NAMES:  # the connector says exactly what the population says
        for p in POP.fixture(name).members:
            expected = POP.coverage(p.idcs)
            assert expected is not None
            assert await coverage(p.idcs) == {
                "idcs": p.idcs, "scheme": expected.scheme, "status": expected.status,
                "since": iso(expected.since), "severe_disability": expected.severe_disability}


async def test_unknown_subject_is_not_found(civil: Backend, health: Backend, call_ctx: CallContext) -> None:
    unknown = POP.unknown_idcs()
    for connector, query in (
        (civil.connector, Query("person", {"idcs": unknown})),
        (civil.connector, Query("person", {"cin": "ZZ999999"})),
        (civil.connector, Query("person", {"idcs": "0000000001"})),  # bad check digit: unknown, not invented
        (civil.connector, Query("family", {"idcs": unknown})),
        (health.connector, Query("coverage", {"idcs": unknown})),
    ):
        with pytest.raises(SourceNotFound) as info:
            await connector.fetch(query, call_ctx)
        assert info.value.code == "subject_not_found"


# ---------------------------------------------------------------- authentication


async def test_unsigned_call_gets_401_and_a_soap_fault(civil: Backend, call_ctx: CallContext) -> None:
    body = envelope("GetPerson", rnp.NAMESPACE, f"<o:idcs>{POP.fixture('amo_tadamon').father.idcs}</o:idcs>")
    async with call_ctx.session.post(civil.url + rnp.PATH, data=body,
                                     headers={"Content-Type": "text/xml; charset=utf-8"}) as resp:
        assert resp.status == 401
        assert resp.content_type == "text/xml"
        assert fault_of(await resp.read()) == ("soap:Client", "Unauthorized")
    assert civil.ctx.control.calls == 1


async def test_call_signed_for_another_audience_is_rejected(civil: Backend, call_ctx: CallContext) -> None:
    connector = civil.with_config(audience=AUDIENCES["health"])
    with pytest.raises(SourceRejected) as info:
        await connector.fetch(Query("person", {"idcs": SOMEONE}), call_ctx)
    assert info.value.code == "source_rejected"


async def test_call_signed_by_an_unknown_key_is_rejected(civil: Backend) -> None:
    stranger = OutboundSigner(keys.generate(), "anss-gateway", "anss.asd", "asd.eligibility")
    async with aiohttp.ClientSession() as session:
        ctx = CallContext(session, stranger, "req-test", "anss.asd", "asd.eligibility")
        with pytest.raises(SourceRejected):
            await civil.connector.fetch(Query("person", {"idcs": SOMEONE}), ctx)


async def test_auth_fault_with_http_500_is_rejected_too(call_ctx: CallContext) -> None:
    async def handler(request: web.Request) -> web.Response:
        fault = (f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><s:Fault><faultcode>s:Client</faultcode>'
                 "<faultstring>Unauthorized</faultstring></s:Fault></s:Body></s:Envelope>")
        return web.Response(status=500, text=fault, content_type="text/xml")

    async with rogue(handler) as connector:
        with pytest.raises(SourceRejected):
            await connector.fetch(Query("person", {"idcs": "1234567890"}), call_ctx)


# ---------------------------------------------------------------- failures


async def test_server_failure_is_unavailable(civil: Backend, call_ctx: CallContext) -> None:
    civil.ctx.control.fail = True
    with pytest.raises(SourceUnavailable) as info:
        await civil.connector.fetch(Query("person", {"idcs": SOMEONE}), call_ctx)
    assert info.value.code == "source_unavailable" and "Service unavailable" not in str(info.value)
    assert civil.ctx.control.calls == 1


async def test_slow_source_times_out(health: Backend, call_ctx: CallContext) -> None:
    health.ctx.control.delay_s = 1.0
    connector = health.with_config(timeout_s=0.2)
    started = time.perf_counter()
    with pytest.raises(SourceTimeout) as info:
        await connector.fetch(Query("coverage", {"idcs": SOMEONE}), call_ctx)
    assert time.perf_counter() - started < 0.8
    assert isinstance(info.value, TimeoutError) and info.value.code == "source_timeout"


async def test_oversized_answer_is_unavailable(civil: Backend, call_ctx: CallContext) -> None:
    connector = civil.with_config(max_response_bytes=256)  # a person answer is ~1 KiB (declared length)
    with pytest.raises(SourceUnavailable, match="too large"):
        await connector.fetch(Query("person", {"idcs": SOMEONE}), call_ctx)


async def test_oversized_streamed_answer_is_unavailable(call_ctx: CallContext) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/xml"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(64):  # 4 MiB, no Content-Length
            await resp.write(b"<a>" + b"x" * 65_530 + b"</a>")
        return resp

    async with rogue(handler, max_response_bytes=100_000) as connector:
        with pytest.raises(SourceUnavailable, match="too large"):
            await connector.fetch(Query("person", {"idcs": "1234567890"}), call_ctx)


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (200, "text/xml", b"<not-closed"),
        (200, "text/html", b"<html>backend secret</html>"),
        (200, "text/xml", f'<!DOCTYPE x [<!ENTITY e "boom">]><s:Envelope xmlns:s="{SOAP_ENV}"/>'.encode()),
        (200, "text/xml", b'<s:Envelope xmlns:s="urn:not-soap"><s:Body/></s:Envelope>'),
        (200, "text/xml", f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><x xmlns="urn:other"/></s:Body>'
                          "</s:Envelope>".encode()),
        (500, "text/xml", b"backend secret stack trace"),
        (502, "text/plain", b"bad gateway"),
        (404, "text/plain", b"nope"),
    ],
)
async def test_broken_answers_are_unavailable(status: int, content_type: str, body: bytes,
                                              call_ctx: CallContext) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    async with rogue(handler) as connector:
        with pytest.raises(SourceUnavailable) as info:
            await connector.fetch(Query("person", {"idcs": "1234567890"}), call_ctx)
    assert "secret" not in str(info.value) and "secret" not in info.value.detail


async def test_refused_connection_is_unavailable(call_ctx: CallContext) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = replace(load_config("civil_registry"), base_url=f"http://127.0.0.1:{port}")
    connector = SoapConnector(config, ROOT)
    with pytest.raises(SourceUnavailable, match="connection failed"):
        await connector.fetch(Query("person", {"idcs": "1234567890"}), call_ctx)


async def test_unexpressible_query_is_a_caller_error(civil: Backend, call_ctx: CallContext) -> None:
    with pytest.raises(ValueError, match="no operation"):
        await civil.connector.fetch(Query("enrolment", {"idcs": "1234567890"}), call_ctx)
    with pytest.raises(ValueError, match="cannot build"):
        await civil.connector.fetch(Query("family", {}), call_ctx)
    assert civil.ctx.control.calls == 0


# ---------------------------------------------------------------- the simulators' own contract


def signed_post(call_ctx: CallContext, url: str, path: str, body: bytes, audience: str,
                **headers: str) -> Any:
    auth = call_ctx.sign("POST", path, body, audience)
    return call_ctx.session.post(url + path, data=body, headers={
        "Content-Type": "text/xml; charset=utf-8", "Authorization": auth, **headers})


@pytest.mark.parametrize(
    ("body", "faultstring"),
    [
        (b"<oops", "Malformed envelope"),
        (b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "DTD not allowed"),
        ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x><x/>'.encode("utf-16"), "DTD not allowed"),
        (envelope("Launch", rnp.NAMESPACE, ""), "Unknown operation"),
        (envelope("GetPerson", "urn:other", "<o:idcs>1234567890</o:idcs>"), "Unknown operation"),
        (envelope("GetPerson", rnp.NAMESPACE, "<o:idcs>12</o:idcs>"),
         "Invalid request: idcs must be 10 digits"),
        (envelope("GetPerson", rnp.NAMESPACE, ""), "Invalid request: exactly one of idcs or cin"),
    ],
)
async def test_simulator_refuses_bad_envelopes(civil: Backend, call_ctx: CallContext, body: bytes,
                                               faultstring: str) -> None:
    async with signed_post(call_ctx, civil.url, rnp.PATH, body, civil.config.audience) as resp:
        assert resp.status == 500
        assert fault_of(await resp.read()) == ("soap:Client", faultstring)


async def test_simulator_checks_the_soap_action(health: Backend, call_ctx: CallContext) -> None:
    idcs = POP.fixture("amo_tadamon").father.idcs
    body = envelope("GetCoverage", amo.NAMESPACE, f"<o:idcs>{idcs}</o:idcs>")
    async with signed_post(call_ctx, health.url, amo.PATH, body, health.config.audience,
                           SOAPAction='"urn:ma:cnss:amo:1#GetCoverage"') as resp:
        assert resp.status == 200
    async with signed_post(call_ctx, health.url, amo.PATH, body, health.config.audience,
                           SOAPAction='"urn:ma:cnss:amo:1#Other"') as resp:
        assert resp.status == 500
        assert fault_of(await resp.read())[0] == "soap:Client"


async def test_simulator_caps_request_bodies(civil: Backend, call_ctx: CallContext) -> None:
    body = envelope("GetPerson", rnp.NAMESPACE, "<o:idcs>1234567890</o:idcs>" + " " * 70_000)
    async with signed_post(call_ctx, civil.url, rnp.PATH, body, civil.config.audience) as resp:
        assert resp.status == 413
        assert fault_of(await resp.read())[0] == "soap:Client"


async def test_simulators_serve_their_wsdl(civil: Backend, health: Backend, call_ctx: CallContext) -> None:
    for backend, path, wsdl in ((civil, rnp.PATH, rnp.WSDL_FILE), (health, amo.PATH, amo.WSDL_FILE)):
        async with call_ctx.session.get(backend.url + path + "?wsdl") as resp:
            assert resp.status == 200 and resp.content_type == "text/xml"
            assert await resp.read() == wsdl.read_bytes()


# ---------------------------------------------------------------- the connector itself


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


def test_construction_never_touches_the_network(no_network: None) -> None:
    for name in ("civil_registry", "health"):
        connector = SoapConnector(load_config(name), ROOT)
        assert connector.wsdl_loads == 1


def test_wsdl_must_be_local(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    shutil.copytree(ROOT / "schemas" / "records", tmp_path / "schemas" / "records")
    wsdl = (ROOT / "schemas" / "wsdl" / "health_amo.wsdl").read_text()
    remote = wsdl.replace("<wsdl:types>", '<wsdl:import namespace="urn:x" location="http://example.invalid/x.wsdl"/>'
                          "<wsdl:types>")
    (tmp_path / "remote.wsdl").write_text(remote)
    with pytest.raises(ValueError, match=r"refers to http://example\.invalid/x\.wsdl; list a local copy"):
        SoapConnector(replace(load_config("health"), options={"wsdl": "remote.wsdl", "path": "/amo/soap"}),
                      tmp_path)


async def test_wsdl_is_parsed_once(health: Backend, call_ctx: CallContext, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    connector = SoapConnector(health.config, tmp_path)
    (tmp_path / "schemas" / "wsdl" / "health_amo.wsdl").unlink()  # from now on only memory can answer
    idcs = [p.idcs for p in POP.fixture("amo_tadamon").members]
    records = await asyncio.gather(*(connector.fetch(Query("coverage", {"idcs": i}), call_ctx)
                                     for i in idcs * 10))
    assert [r.data["idcs"] for r in records] == idcs * 10
    assert connector.wsdl_loads == 1


async def test_concurrency_is_bounded_per_connector(health: Backend, call_ctx: CallContext) -> None:
    health.ctx.control.delay_s = 0.15
    connector = health.with_config(max_connections=2)
    idcs = POP.fixture("amo_tadamon").father.idcs
    started = time.perf_counter()
    await asyncio.gather(*(connector.fetch(Query("coverage", {"idcs": idcs}), call_ctx) for _ in range(6)))
    assert time.perf_counter() - started >= 0.15 * 3 - 0.02  # three waves of two
    assert health.ctx.control.calls == 6


async def test_connectors_through_the_registry(civil: Backend, health: Backend) -> None:
    for backend, operations in ((civil, {"person", "family"}), (health, {"coverage"})):
        connector = registry.build(backend.config, ROOT)
        assert isinstance(connector, SoapConnector) and isinstance(connector, Connector)
        assert connector.name == backend.config.name and connector.operations == frozenset(operations)
        await connector.aclose()


def test_config_files_are_complete() -> None:
    for name, audience, port in (("civil_registry", "rnp.etat-civil", 8101), ("health", "cnss.amo", 8103)):
        config = load_config(name)
        assert (config.kind, config.audience, config.base_url) == ("soap", audience, f"http://127.0.0.1:{port}")
        assert (ROOT / config.options["wsdl"]).is_file() and config.options["path"].startswith("/")
        assert AUDIENCES[name] == audience
