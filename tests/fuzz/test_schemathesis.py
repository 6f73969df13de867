"""Schemathesis against the gateway's own OpenAPI document, on a REAL gateway in front of the four simulators.

Every operation of ``schemas/openapi.json`` (loaded from the file, so its ``$ref``s to the sibling JSON Schemas
resolve as on disk) is fuzzed with schema-conforming ("positive") and, where the schema allows it,
non-conforming ("negative") requests. Each generated request is prepared exactly as it will be sent and then
signed with a client assertion for ``anss.asd`` over those exact method, path and body bytes, so the fuzzing
reaches validation, policy and federation rather than stopping at 401; a portion is sent unsigned (with
whatever Authorization header Schemathesis made up, or none).

Every answer must: not be a 5xx, have a documented status, media type, headers and body, and carry an
``X-JWS-Signature`` that verifies against the gateway's JWKS (with the ``X-Request-Id`` and, for an
authenticated question, the binding to that question in its protected header). Bounded and seeded for CI.
"""

from __future__ import annotations

import http.client
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.citizen import devidp
from gateway.client import client_assertion
from gateway.crypto import keys
from gateway.crypto.jws import SIGNATURE_HEADER, SignatureInvalid, request_digest, verify_detached
from gateway.crypto.keyring import dev_client_key_path
from gateway.crypto.keys import SigningKey
from simulators.population import FIXTURE_NAMES
from tests.fuzz.conftest import CLIENT_ID, LiveStack

OFFICER_ID = "dgssi.officer"  # config/clients.toml: role = "officer"

OPENAPI = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(OPENAPI, config=schemathesis.Config())  # explicit: no config discovery
VERIFICATIONS = "/v1/verifications"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # acts on negative cases only: they must be refused with a 4xx
]
# a batch upload is JSON Lines: sent as the text the schema generates (a string), like text/plain
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
PURPOSES = (None, "asd.eligibility", "amo.tadamon.eligibility")  # None: keep the generated purpose
# statuses after which the gateway has read the body and accepted the assertion (the answer names the question)
AUTHENTICATED_STATUSES = {200, 400, 403, 404, 415}
# what a POST without a valid assertion may get: refused as unauthenticated, or stopped before (size, time)
UNAUTHENTICATED_STATUSES = {401, 408, 413, 431}
FUZZ_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
UNSIGNED_SETTINGS = settings(FUZZ_SETTINGS, max_examples=25)


def operation_params() -> list[Any]:
    """(path, method, mode) for every documented operation and every mode its schema can be fuzzed in."""
    params = []
    for result in SCHEMA.get_all_operations():
        operation = result.ok()
        # an operation without parameters or body has nothing to negate: positive only
        modes = [GenerationMode.POSITIVE]
        if operation.body or any(True for _ in operation.iter_parameters()):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            params.append(pytest.param(operation.path, operation.method.upper(), mode,
                                       id=f"{operation.method.upper()} {operation.path} {mode.value}"))
    return params


def test_the_schema_loads_with_its_external_references() -> None:
    operations = {(r.ok().method.upper(), r.ok().path) for r in SCHEMA.get_all_operations()}
    assert operations == {("POST", VERIFICATIONS), ("GET", "/healthz"), ("GET", "/readyz"),
                          ("GET", "/.well-known/jwks.json"), ("GET", "/schemas/{name}"),
                          ("POST", "/v1/consents"), ("GET", "/v1/consents"),
                          ("GET", "/v1/consents/{consent_id}"), ("POST", "/v1/consents/{consent_id}/revoke"),
                          ("GET", "/v1/citizen/access-log"),
                          ("POST", "/v1/audit/search"), ("GET", "/v1/audit/entries/{index}"),
                          ("GET", "/v1/audit/integrity"), ("POST", "/v1/audit/verify"), ("GET", "/v1/audit/export"),
                          ("GET", "/v1/audit/anomalies"), ("GET", "/metrics"), ("GET", "/v1/services"),
                          ("GET", "/v1/services/{service}"), ("POST", "/v1/services/{service}"),
                          ("POST", "/v1/batches"), ("GET", "/v1/batches/{batch_id}"),
                          ("GET", "/v1/batches/{batch_id}/results"), ("POST", "/v1/batches/{batch_id}/cancel"),
                          ("GET", "/log/checkpoint"), ("GET", "/log/consistency")}
    body = SCHEMA[VERIFICATIONS]["POST"].body[0]
    assert body.media_type == "application/json"


# ---------------------------------------------------------------------------------------------- sending


class Sent:
    """A generated case as it went over the wire, and what came back."""

    def __init__(self, case: Case, prepared: requests.PreparedRequest, response: requests.Response,
                 jti: str | None, transport_kwargs: dict[str, Any]) -> None:
        self.case = case
        self.prepared = prepared
        self.response = response
        self.jti = jti
        self.transport_kwargs = transport_kwargs

    @property
    def body(self) -> bytes:
        return _body_bytes(self.prepared)

    def describe(self) -> str:
        headers = "\n".join(f"{k}: {v}" for k, v in self.prepared.headers.items())
        answer = "\n".join(f"{k}: {v}" for k, v in self.response.headers.items())
        return (f"\n--- request\n{self.prepared.method} {self.prepared.path_url}\n{headers}\n\n{self.body[:2000]!r}"
                f"\n--- response\n{self.response.status_code}\n{answer}\n\n{self.response.content[:2000]!r}")


def _body_bytes(prepared: requests.PreparedRequest) -> bytes:
    body = prepared.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    assert isinstance(body, bytes), f"streamed bodies are not generated here: {type(body)}"
    return body


def send(session: requests.Session, live: LiveStack, case: Case, signed: bool) -> Sent:
    """Prepare the case exactly as it will be sent; sign those bytes (if ``signed``); send it."""
    kwargs = case.as_transport_kwargs(base_url=live.url)
    request = requests.Request(
        method=kwargs["method"], url=kwargs["url"], headers=kwargs.get("headers"), params=kwargs.get("params"),
        json=kwargs.get("json"), data=kwargs.get("data"), cookies=kwargs.get("cookies"),
    )
    prepared = request.prepare()
    body = _body_bytes(prepared)
    if isinstance(prepared.body, str):  # send exactly the bytes the assertion is computed over
        prepared.body = body
        prepared.headers["Content-Length"] = str(len(body))
    jti = None
    if signed and prepared.path_url.startswith("/v1/citizen/"):
        # citizens: a token of the dev identity provider in place of the one generated (none: a negative case)
        if "Authorization" in prepared.headers:
            citizen = live.population.fixture(FIXTURE_NAMES[0]).father.idcs
            prepared.headers["Authorization"] = f"Bearer {devidp.mint(live.settings, citizen)}"
    elif signed:
        jti = uuid.uuid4().hex  # fresh for every send, shrinking replays included
        assert prepared.method is not None
        client_id, key = signer(live, prepared.path_url)
        token = client_assertion(key, client_id, live.settings.gateway_id, prepared.method,
                                 prepared.path_url, body, jti=jti)
        prepared.headers["Authorization"] = f"Bearer {token}"
    response = session.send(prepared, timeout=30, allow_redirects=False)
    return Sent(case, prepared, response, jti, {**kwargs, "base_url": live.url})


def signer(live: LiveStack, path: str) -> tuple[str, SigningKey]:
    """Who signs: the officer for the officers' API (so the fuzzing reaches it), else the data client."""
    if path.startswith("/v1/audit/"):
        return OFFICER_ID, keys.load_or_create(dev_client_key_path(live.settings.state_dir, OFFICER_ID))
    return CLIENT_ID, live.client_key


def check(sent: Sent, live: LiveStack) -> None:
    """The Schemathesis checks, then the gateway's own promise: every answer is signed, by a published key."""
    sent.case.validate_response(sent.response, checks=CHECKS, headers=dict(sent.prepared.headers),
                                transport_kwargs=sent.transport_kwargs)
    response = sent.response
    token = response.headers.get(SIGNATURE_HEADER)
    assert token is not None, f"the answer is not signed{sent.describe()}"
    try:
        header = verify_detached(token, response.content, live.gateway_keys)
    except SignatureInvalid as exc:
        raise AssertionError(f"the answer's signature does not verify ({exc}){sent.describe()}") from exc
    assert header["request_id"] == response.headers.get("X-Request-Id"), sent.describe()
    if sent.jti is None and sent.prepared.method == "POST":
        assert response.status_code in UNAUTHENTICATED_STATUSES, f"answered without an assertion{sent.describe()}"
    if sent.jti is not None and sent.prepared.method == "POST" and response.status_code in AUTHENTICATED_STATUSES:
        assert header.get("request_sha256") == request_digest(sent.jti, sent.body), (
            f"the signed answer is not bound to the question it answers{sent.describe()}")


@pytest.fixture(scope="module")
def session() -> Any:
    with requests.Session() as s:
        yield s


# ---------------------------------------------------------------------------------- the fuzzing itself


def steer(case: Case, live: LiveStack, purpose_index: int, subject_index: int) -> None:
    """Point some schema-valid requests at a real purpose and a real person, so they get past the purpose
    check into policy and federation (generated purposes and identifiers are mostly unknown)."""
    body = case.body
    if not isinstance(body, dict):
        return
    purpose = PURPOSES[purpose_index % len(PURPOSES)]
    if purpose is not None:
        body = {**body, "purpose": purpose}
    subjects = known_subjects(live)
    if subject_index < len(subjects):
        body = {**body, "subject": subjects[subject_index]}
    case.body = body


def known_subjects(live: LiveStack) -> list[dict[str, str]]:
    population = live.population
    subjects: list[dict[str, str]] = [{"idcs": population.unknown_idcs()}]
    for name in FIXTURE_NAMES:
        father = population.fixture(name).father
        subjects.append({"idcs": father.idcs})
        if father.cin is not None:
            subjects.append({"cin": father.cin})
    return subjects


def negated_authorization(case: Case) -> bool:
    """Schemathesis made the Authorization header itself the invalid part: signing would make the case valid."""
    return case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)


def run_fuzz(live: LiveStack, session: requests.Session, path: str, method: str, mode: GenerationMode,
             signed: bool, fuzz_settings: settings) -> int:
    operation = SCHEMA[path][method]
    steered = mode is GenerationMode.POSITIVE and path == VERIFICATIONS
    sent_count = 0

    @fuzz_settings
    @given(case=operation.as_strategy(generation_mode=mode),
           purpose_index=st.integers(0, 5) if steered else st.just(0),
           subject_index=st.integers(0, 31) if steered else st.just(0))
    def fuzz(case: Case, purpose_index: int, subject_index: int) -> None:
        nonlocal sent_count
        if steered:
            steer(case, live, purpose_index, subject_index)
        sent = send(session, live, case, signed and not negated_authorization(case))
        sent_count += 1
        check(sent, live)

    fuzz()
    return sent_count


@pytest.mark.parametrize(("path", "method", "mode"), operation_params())
def test_signed_requests_follow_the_contract(live_stack: LiveStack, session: requests.Session, path: str,
                                             method: str, mode: GenerationMode) -> None:
    assert run_fuzz(live_stack, session, path, method, mode, signed=True, fuzz_settings=FUZZ_SETTINGS) >= 1


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_unsigned_requests_follow_the_contract(live_stack: LiveStack, session: requests.Session,
                                               mode: GenerationMode) -> None:
    assert run_fuzz(live_stack, session, VERIFICATIONS, "POST", mode, signed=False,
                    fuzz_settings=UNSIGNED_SETTINGS) >= 1


def test_signed_fuzzing_gets_past_authentication(live_stack: LiveStack, session: requests.Session) -> None:
    """The signing above is not vacuous: a steered, signed, schema-valid request is answered 200."""
    outcomes: list[int] = []

    @settings(FUZZ_SETTINGS, max_examples=10)
    @given(case=SCHEMA[VERIFICATIONS]["POST"].as_strategy(generation_mode=GenerationMode.POSITIVE))
    def probe(case: Case) -> None:
        steer(case, live_stack, 1, 1)
        sent = send(session, live_stack, case, signed=True)
        check(sent, live_stack)
        outcomes.append(sent.response.status_code)

    probe()
    assert 401 not in outcomes and 200 in outcomes, outcomes


def test_signed_fuzzing_reaches_the_citizens_log(live_stack: LiveStack, session: requests.Session) -> None:
    """The citizen's token above is not vacuous either: schema-valid reads of the access log are answered 200."""
    outcomes: list[int] = []

    @settings(FUZZ_SETTINGS, max_examples=10)
    @given(case=SCHEMA["/v1/citizen/access-log"]["GET"].as_strategy(generation_mode=GenerationMode.POSITIVE))
    def probe(case: Case) -> None:
        sent = send(session, live_stack, case, signed=True)
        check(sent, live_stack)
        outcomes.append(sent.response.status_code)

    probe()
    assert 401 not in outcomes and 200 in outcomes, outcomes


# ------------------------------------------------------------------ beyond what Schemathesis can generate

FIELD_VALUE_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])  # what HTTP allows in a field value


def test_raw_authorization_bytes_are_refused_with_401(live_stack: LiveStack) -> None:
    """Header values Schemathesis never generates (non-ASCII, undecodable bytes), sent as raw bytes."""
    body = b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"CASE-RAW"}'
    address = urlsplit(live_stack.url)

    @settings(FUZZ_SETTINGS, max_examples=50)
    @given(st.sampled_from([b"Bearer ", b"bearer ", b""]), st.binary(min_size=1, max_size=200).map(
        lambda raw: bytes(FIELD_VALUE_BYTES[b % len(FIELD_VALUE_BYTES)] for b in raw)))
    @example(b"Bearer ", b"\xff")
    def send_raw(scheme: bytes, value: bytes) -> None:
        connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
        try:
            connection.putrequest("POST", VERIFICATIONS, skip_accept_encoding=True)
            for name, header in (("Content-Type", b"application/json"), ("Authorization", scheme + value),
                                 ("Content-Length", str(len(body)).encode())):
                connection.putheader(name, header)
            connection.endheaders(body)
            response = connection.getresponse()
            content = response.read()
            status, token = response.status, response.getheader(SIGNATURE_HEADER)
        finally:
            connection.close()
        request = f"POST {VERIFICATIONS} with Authorization: {scheme + value!r}"
        assert status == 401, f"{request} -> {status} {content[:300]!r}"
        assert token is not None and verify_detached(token, content, live_stack.gateway_keys), request

    send_raw()
