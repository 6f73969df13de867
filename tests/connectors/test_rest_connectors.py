"""The REST connector kind against the MASSAR and CNSS simulators (and small rogue backends) on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from connectors.base import (
    CallContext,
    Connector,
    ConnectorConfig,
    Query,
    Record,
    SourceFault,
    SourceMalformed,
    SourceNotFound,
    SourceQueryRefused,
    SourceRejected,
    SourceTimeout,
    SourceUnavailable,
)
from connectors.rest import RestConnector
from connectors.transport import backend_session
from gateway.config.connectors import load_connector_file
from gateway.crypto import keys
from gateway.crypto.outbound import OutboundSigner
from gateway.federation.calendar import last_complete_months
from simulators import education as massar
from simulators import employment as cnss
from simulators.common import AUDIENCES, SimulatorContext
from simulators.population import Population

ROOT = Path(__file__).resolve().parents[2]
POP = Population("test-seed", 2000)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_config(name: str) -> ConnectorConfig:
    return load_connector_file(ROOT / "config" / "connectors" / f"{name}.toml", {})


def base_url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


class Backend:
    """A simulator served on a free loopback port, and a connector configured for it."""

    def __init__(self, ctx: SimulatorContext, server: TestServer, config: ConnectorConfig) -> None:
        self.ctx, self.config = ctx, config
        self.url = base_url(server)
        self.connector = RestConnector(config, ROOT)


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
async def rogue(handler: Handler, **overrides: Any) -> AsyncIterator[RestConnector]:
    """A backend that answers every path with ``handler``, behind an education-shaped connector."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve(app) as server:
        yield RestConnector(replace(load_config("education"), base_url=base_url(server), **overrides), ROOT)


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
async def education(key: keys.SigningKey) -> AsyncIterator[Backend]:
    async with simulator("education", massar.build_app, key) as backend:
        yield backend


@pytest.fixture
async def employment(key: keys.SigningKey) -> AsyncIterator[Backend]:
    async with simulator("employment", cnss.build_app, key) as backend:
        yield backend


def schema_validator(kind: str) -> Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / "records" / f"{kind}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def enrolment_answer(idcs: str) -> dict[str, Any]:
    found = POP.enrolment(idcs)
    assert found is not None
    return {"idcs": idcs, "massar_code": found.massar_code, "school_year": found.school_year,
            "status": found.status, "level": found.level, "school": found.school, "region": found.region}


OFF_SCHEMA = json.dumps({**enrolment_answer(POP.fixture("disabled_child").children[0].idcs),
                         "status": "SECRET-maybe"}).encode()


# ------------------------------------------------------------------ answers from the simulators


async def test_connector_satisfies_the_protocol(education: Backend, employment: Backend) -> None:
    assert isinstance(education.connector, Connector)
    assert education.connector.name == "education"
    assert education.connector.operations == frozenset({"enrolment"})
    assert employment.connector.operations == frozenset({"declarations"})
    await education.connector.aclose()


async def test_enrolment_of_fixture_children_matches_population(
    education: Backend, call_ctx: CallContext
) -> None:
    household = POP.fixture("child_out_of_school")
    teenager, sibling = household.children
    validator = schema_validator("enrolment")
    records: dict[str, Record] = {}
    for child in (teenager, sibling):
        record = await education.connector.fetch(Query("enrolment", {"idcs": child.idcs}), call_ctx)
        expected = POP.enrolment(child.idcs)
        assert expected is not None
        assert record.source == "education" and record.kind == "enrolment"
        assert dict(record.data) == {"idcs": expected.idcs, "massar_code": expected.massar_code,
                                     "school_year": expected.school_year, "status": expected.status,
                                     "level": expected.level, "school": expected.school}
        validator.validate(dict(record.data))
        records[child.idcs] = record
    assert records[teenager.idcs].data["status"] == "not_enrolled"
    assert records[sibling.idcs].data["status"] == "enrolled"


async def test_enrolment_for_a_given_school_year(education: Backend, call_ctx: CallContext) -> None:
    child = POP.fixture("child_out_of_school").children[1]
    record = await education.connector.fetch(
        Query("enrolment", {"idcs": child.idcs, "school_year": "2024-2025"}), call_ctx)
    expected = POP.enrolment(child.idcs, "2024-2025")
    assert expected is not None
    assert record.data["school_year"] == "2024-2025"
    assert record.data["level"] == expected.level


async def test_a_python_mapping_module_is_the_escape_hatch(education: Backend, call_ctx: CallContext) -> None:
    config = replace(education.config, operations={}, mapping="tests.connectors.mapping_module")
    connector = RestConnector(config, ROOT)
    child = POP.fixture("child_out_of_school").children[1]
    record = await connector.fetch(Query("enrolment", {"idcs": child.idcs}), call_ctx)
    expected = POP.enrolment(child.idcs)
    assert expected is not None
    assert record.data["level"] == expected.level.upper() and record.data["school"] == expected.school
    assert record.kind == "enrolment" and education.ctx.control.calls == 1


async def test_a_not_found_value_in_the_reply_is_a_not_found(call_ctx: CallContext) -> None:
    """``not_found = { at, equals }``: a backend that answers 200 with a marker instead of a 404."""
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"found": False})

    config = load_config("education")
    operation = dict(config.operations["enrolment"]) | {"not_found": {"status": 404, "at": "/found",
                                                                      "equals": False}}
    async with rogue(handler, operations={"enrolment": operation}) as connector:
        with pytest.raises(SourceNotFound):
            await connector.fetch(Query("enrolment", {"idcs": "1234567890"}), call_ctx)


async def test_declarations_of_salaried_father_match_population(
    employment: Backend, call_ctx: CallContext
) -> None:
    father = POP.fixture("salaried_parent").father
    first, last = last_complete_months(POP.today, 6)
    record = await employment.connector.fetch(
        Query("declarations", {"idcs": father.idcs, "from": first, "to": last}), call_ctx)
    expected = POP.employment(father.idcs, first, last)
    assert expected is not None and expected.declarations
    assert record.source == "employment" and record.kind == "declarations"
    assert record.data["idcs"] == father.idcs
    assert record.data["employer"] == expected.employer
    assert record.data["employer_cnss"] == expected.employer_cnss
    assert record.data["months"] == [
        {"month": d.month, "days": d.days, "salary_mad": d.salary} for d in expected.declarations
    ]
    assert len(record.data["months"]) == 6
    schema_validator("declarations").validate(dict(record.data))


async def test_never_insured_mother_is_not_found(employment: Backend, call_ctx: CallContext) -> None:
    mother = POP.fixture("salaried_parent").mother
    first, last = last_complete_months(POP.today, 6)
    with pytest.raises(SourceNotFound) as caught:
        await employment.connector.fetch(
            Query("declarations", {"idcs": mother.idcs, "from": first, "to": last}), call_ctx)
    assert caught.value.source == "employment" and caught.value.code == "subject_not_found"


async def test_unknown_idcs_is_not_found(
    education: Backend, employment: Backend, call_ctx: CallContext
) -> None:
    unknown = POP.unknown_idcs()
    with pytest.raises(SourceNotFound):
        await education.connector.fetch(Query("enrolment", {"idcs": unknown}), call_ctx)
    with pytest.raises(SourceNotFound):
        await employment.connector.fetch(
            Query("declarations", {"idcs": unknown, "from": "2025-01", "to": "2025-06"}), call_ctx)


def without_patterns(config: ConnectorConfig) -> ConnectorConfig:
    """The same administration with no ``pattern`` on any parameter: every value reaches the path template."""
    operations = {
        name: {**op, "params": {p: {k: v for k, v in spec.items() if k != "pattern"}
                                for p, spec in op.get("params", {}).items()}}
        for name, op in config.operations.items()
    }
    return replace(config, operations=operations)


async def test_path_values_are_quoted_and_the_signature_still_holds(
    education: Backend, call_ctx: CallContext
) -> None:
    # Reaches the handler (signature verified on the quoted path), which refuses the malformed idcs: 400.
    connector = RestConnector(without_patterns(education.config), ROOT)
    with pytest.raises(SourceQueryRefused):
        await connector.fetch(Query("enrolment", {"idcs": "../../x?y=1"}), call_ctx)
    assert education.ctx.control.calls == 1


async def test_a_parameter_off_its_declared_pattern_is_refused_before_any_call(
    education: Backend, call_ctx: CallContext
) -> None:
    with pytest.raises(ValueError, match="not of the expected form"):
        await education.connector.fetch(Query("enrolment", {"idcs": "../../x?y=1"}), call_ctx)
    assert education.ctx.control.calls == 0


async def test_unknown_operation_and_missing_parameter_are_caller_errors(
    employment: Backend, call_ctx: CallContext
) -> None:
    with pytest.raises(ValueError, match="no operation"):
        await employment.connector.fetch(Query("enrolment", {"idcs": "1"}), call_ctx)
    with pytest.raises(ValueError, match="missing parameter"):
        await employment.connector.fetch(Query("declarations", {"idcs": "1"}), call_ctx)
    assert employment.ctx.control.calls == 0


# ------------------------------------------------------------------ signatures


async def test_unsigned_call_is_refused(education: Backend, call_ctx: CallContext) -> None:
    child = POP.fixture("child_out_of_school").children[0]
    async with call_ctx.session.get(f"{education.url}/massar/v1/pupils/{child.idcs}/enrolment") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["error"] == "unauthorized"


async def test_token_for_another_audience_is_refused(
    education: Backend, signer: OutboundSigner, call_ctx: CallContext
) -> None:
    path = f"/massar/v1/pupils/{POP.fixture('child_out_of_school').children[0].idcs}/enrolment"
    headers = {"Authorization": signer("GET", path, b"", AUDIENCES["health"])}
    async with call_ctx.session.get(education.url + path, headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthorized"
    misconfigured = RestConnector(replace(education.config, audience=AUDIENCES["health"]), ROOT)
    with pytest.raises(SourceRejected):
        await misconfigured.fetch(Query("enrolment", {"idcs": "1234567890"}), call_ctx)


async def test_token_replayed_against_another_path_is_refused(
    education: Backend, signer: OutboundSigner, call_ctx: CallContext
) -> None:
    teenager, sibling = POP.fixture("child_out_of_school").children
    signed_for = f"/massar/v1/pupils/{teenager.idcs}/enrolment"
    headers = {"Authorization": signer("GET", signed_for, b"", AUDIENCES["education"])}
    async with call_ctx.session.get(f"{education.url}{signed_for}", headers=headers) as resp:
        assert resp.status == 200
    async with call_ctx.session.get(f"{education.url}/massar/v1/pupils/{sibling.idcs}/enrolment",
                                    headers=headers) as resp:
        assert resp.status == 401
    other_year = f"{education.url}{signed_for}?school_year=2024-2025"
    async with call_ctx.session.get(other_year, headers=headers) as resp:
        assert resp.status == 401


# ------------------------------------------------------------------ simulator input checks


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("education", "/massar/v1/pupils/12345/enrolment"),
        ("education", "/massar/v1/pupils/{idcs}/enrolment?school_year=2025-2027"),
        ("education", "/massar/v1/pupils/{idcs}/enrolment?school_year=2025"),
        ("employment", "/cnss/v1/insured/12345/declarations?from=2025-01&to=2025-02"),
        ("employment", "/cnss/v1/insured/{idcs}/declarations?from=2025-01"),
        ("employment", "/cnss/v1/insured/{idcs}/declarations?from=2025-13&to=2026-01"),
        ("employment", "/cnss/v1/insured/{idcs}/declarations?from=2025-06&to=2025-05"),
        ("employment", "/cnss/v1/insured/{idcs}/declarations?from=2023-01&to=2025-01"),
    ],
)
async def test_simulators_refuse_malformed_requests(
    name: str, path: str, key: keys.SigningKey, signer: OutboundSigner, call_ctx: CallContext
) -> None:
    build = massar.build_app if name == "education" else cnss.build_app
    path = path.format(idcs=POP.fixture("salaried_parent").father.idcs)
    async with simulator(name, build, key) as backend:
        headers = {"Authorization": signer("GET", path, b"", AUDIENCES[name])}
        async with call_ctx.session.get(backend.url + path, headers=headers) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"
            assert (await resp.json())["error"] == "bad_request"


async def test_a_24_month_period_is_accepted(employment: Backend, call_ctx: CallContext) -> None:
    father = POP.fixture("salaried_parent").father
    record = await employment.connector.fetch(
        Query("declarations", {"idcs": father.idcs, "from": "2023-02", "to": "2025-01"}), call_ctx)
    assert len(record.data["months"]) == 24


# ------------------------------------------------------------------ failures and limits


async def test_failing_backend_is_unavailable_after_one_retry(
    education: Backend, call_ctx: CallContext
) -> None:
    education.ctx.control.fail = True
    with pytest.raises(SourceUnavailable) as caught:
        await education.connector.fetch(Query("enrolment", {"idcs": "1234567890"}), call_ctx)
    assert education.ctx.control.calls == 2
    assert caught.value.code == "source_unavailable"


async def test_slow_backend_times_out_within_the_deadline(education: Backend, call_ctx: CallContext) -> None:
    connector = RestConnector(replace(education.config, timeout_s=0.3), ROOT)
    query = Query("enrolment", {"idcs": POP.fixture("disabled_child").children[0].idcs})
    await connector.fetch(query, call_ctx)  # the administration first fetches the gateway's keys (its JWKS):
    before = education.ctx.control.calls  # on a loaded machine that alone could outlast the 0.3 s below
    education.ctx.control.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(SourceTimeout) as caught:
        await connector.fetch(query, call_ctx)
    assert time.monotonic() - started < 0.6
    assert isinstance(caught.value, TimeoutError) and caught.value.code == "source_timeout"
    assert education.ctx.control.calls == before + 1  # a timeout is not retried


async def test_refused_connection_is_unavailable(call_ctx: CallContext) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connector = RestConnector(replace(load_config("education"), base_url=f"http://127.0.0.1:{port}"), ROOT)
    with pytest.raises(SourceUnavailable):
        await connector.fetch(Query("enrolment", {"idcs": "1234567890"}), call_ctx)


@pytest.mark.parametrize(
    ("first_status", "error", "calls"),
    [
        (502, None, 2), (504, None, 2),  # retried once, then the answer
        (500, SourceFault, 1), (302, SourceMalformed, 1),  # no redirects
        (400, SourceQueryRefused, 1), (422, SourceQueryRefused, 1), (409, SourceUnavailable, 1),
        (204, SourceMalformed, 1), (202, SourceMalformed, 1),
        (403, SourceRejected, 1),
    ],
)
async def test_statuses_and_retries(
    first_status: int, error: type[Exception] | None, calls: int, call_ctx: CallContext
) -> None:
    idcs = POP.fixture("disabled_child").children[0].idcs
    seen = 0

    async def flaky(request: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        if seen > 1:
            return web.json_response(enrolment_answer(idcs))
        return web.Response(status=first_status, headers={"Location": "/elsewhere"})

    async with rogue(flaky) as connector:
        if error is None:
            record = await connector.fetch(Query("enrolment", {"idcs": idcs}), call_ctx)
            assert record.data["idcs"] == idcs
        else:
            with pytest.raises(error, match=f"HTTP {first_status}") as caught:
                await connector.fetch(Query("enrolment", {"idcs": idcs}), call_ctx)
            assert type(caught.value) is error
    assert seen == calls


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_answer_is_unavailable(chunked: bool, call_ctx: CallContext) -> None:
    idcs = POP.fixture("disabled_child").children[0].idcs
    big = json.dumps({**enrolment_answer(idcs), "padding": "x" * 8192}).encode()

    async def oversized(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=big, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(big), 512):
            await resp.write(big[i : i + 512])
        await resp.write_eof()
        return resp

    async with rogue(oversized, max_response_bytes=4096) as connector:
        with pytest.raises(SourceUnavailable, match="too large"):
            await connector.fetch(Query("enrolment", {"idcs": idcs}), call_ctx)
    async with rogue(oversized, max_response_bytes=len(big)) as connector:  # the same answer, at the cap
        record = await connector.fetch(Query("enrolment", {"idcs": idcs}), call_ctx)
    assert record.data["idcs"] == idcs


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("text/html", b"<html><body>SECRET backend page: proxy error</body></html>", "not JSON"),
        ("application/json", b"<html>SECRET</html>", "not valid JSON"),
        ("application/json", b'["SECRET"]', "not a JSON object"),
        ("application/json", b'{"idcs": "SECRET"}', "lacks expected fields"),
        ("application/json", OFF_SCHEMA, "does not fit the enrolment record"),
    ],
)
async def test_malformed_200_answers_are_unavailable_without_backend_text(
    content_type: str, body: bytes, reason: str, call_ctx: CallContext
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    async with rogue(page) as connector:
        with pytest.raises(SourceUnavailable, match=reason) as caught:
            await connector.fetch(Query("enrolment", {"idcs": "1234567890"}), call_ctx)
    assert "SECRET" not in str(caught.value)


async def test_concurrency_is_bounded_per_connector(call_ctx: CallContext) -> None:
    idcs = POP.fixture("disabled_child").children[0].idcs
    in_flight = peak = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.json_response(enrolment_answer(idcs))

    async with rogue(slow, max_connections=2) as connector:
        records = await asyncio.gather(
            *(connector.fetch(Query("enrolment", {"idcs": idcs}), call_ctx) for _ in range(6)))
    assert len(records) == 6
    assert peak == 2


async def test_a_connection_dropped_mid_call_is_retried_with_a_new_jti_and_never_resent_as_is(
        signer: OutboundSigner) -> None:
    """aiohttp on its own resends an idempotent request on a reused connection that turns out closed: the same
    signed request, the same ``jti``, which the administration must take for a replay. The gateway's session
    (``backend_session``) leaves retries to the connector, which signs each attempt anew."""
    seen: list[str] = []

    async def drop(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].split(" ", 1)[1]
        seen.append(jwt.decode(token, options={"verify_signature": False})["jti"])
        assert request.transport is not None
        request.transport.close()  # no answer at all
        return web.Response(status=200)

    async with rogue(drop) as connector, backend_session() as session:
        ctx = CallContext(session, signer, "req-drop", "anss.asd", "asd.eligibility")
        for _ in range(3):
            with pytest.raises(SourceUnavailable):
                await connector.fetch(Query("enrolment", {"idcs": "1234567890"}), ctx)
    assert len(seen) == 3 * 2, "one call and the connector's one retry, each time"
    assert len(set(seen)) == len(seen), "every request its own jti"
