"""The published contract: ``schemas/openapi.json`` and the JSON Schemas it points to.

Checks that the documents are well formed (OpenAPI 3.1, JSON Schema 2020-12, every ``$ref`` resolves), that
they cannot drift from the code (error catalogue, registered routes), and that REAL answers of a running
gateway in front of the four simulators follow them: bodies, media types and headers, status by status.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import orjson
import pytest
from jsonschema import Draft202012Validator
from multidict import CIMultiDict
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from gateway.client import Answer, client_assertion
from gateway.config.settings import load
from gateway.web.app import create_app
from gateway.web.state import RUNTIME
from simulators.population import FIXTURE_NAMES
from tests.gateway.conftest import Stack

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
OPENAPI = SCHEMAS / "openapi.json"
PATH = "/v1/verifications"
PURPOSE = "asd.eligibility"
POST_STATUSES = {"200", "400", "401", "403", "404", "408", "413", "415", "429", "431", "500", "503"}
COMMON_HEADERS = {"X-JWS-Signature", "X-Request-Id"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
NOT_SCHEMAS = {"openapi.json", "errors.json"}  # JSON documents under schemas/ that are not JSON Schemas


# ------------------------------------------------------------------------------------------------ helpers


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def openapi() -> dict[str, Any]:
    document = read(OPENAPI)
    assert isinstance(document, dict)
    return document


def json_files() -> list[Path]:
    return sorted(SCHEMAS.rglob("*.json"))


def schema_files() -> list[Path]:
    return [p for p in json_files() if p.relative_to(SCHEMAS).as_posix() not in NOT_SCHEMAS]


@cache
def registry() -> Registry[Any]:
    """Every JSON document under schemas/ at its file URI, so relative ``$ref``s resolve as on disk."""
    return Registry().with_resources((p.as_uri(), DRAFT202012.create_resource(read(p))) for p in json_files())


def validator(uri: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": uri}, registry=registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(uri: str, instance: Any) -> None:
    errors = sorted(validator(uri).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:10]
    ) + f"\nagainst {uri.rsplit('/', 1)[-1]}\n{json.dumps(instance, ensure_ascii=False)[:4000]}"


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer_get(document: Any, pointer: str) -> Any:
    node = document
    for raw in pointer.split("/")[1:] if pointer else []:
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        else:
            assert isinstance(node, dict) and token in node, f"no {token!r} on the way to {pointer!r}"
            node = node[token]
    return node


def deref(pointer: str) -> tuple[str, dict[str, Any]]:
    """Follow internal ``$ref``s of OpenAPI objects (responses, headers): (final pointer, object)."""
    node = pointer_get(openapi(), pointer)
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"{pointer}: only internal references expected here, got {ref!r}"
        pointer = ref[1:]
        node = pointer_get(openapi(), pointer)
    return pointer, node


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi()["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def response_object(method: str, path: str, status: int) -> tuple[str, dict[str, Any]]:
    responses = openapi()["paths"][path][method]["responses"]
    key = str(status) if str(status) in responses else "default"
    assert key in responses, f"{method.upper()} {path}: {status} is not documented"
    return deref(f"/paths/{escape(path)}/{method}/responses/{key}")


def check_against_openapi(answer: Answer, method: str, path: str) -> Any:
    """The answer follows the OpenAPI document: documented status, headers, media type and body schema."""
    pointer, response = response_object(method, path, answer.status)
    for name in response.get("headers", {}):
        header_pointer, header = deref(f"{pointer}/headers/{escape(name)}")
        value = answer.headers.get(name)
        if value is None:
            assert not header.get("required"), f"{answer.status}: required header {name} is missing"
            continue
        assert_valid(f"{OPENAPI.as_uri()}#{header_pointer}/schema", value)
    media_type = answer.headers.get("Content-Type", "").split(";")[0].strip()
    assert media_type in response["content"], f"{answer.status}: {media_type} is not documented"
    document = orjson.loads(answer.body)
    assert_valid(f"{OPENAPI.as_uri()}#{pointer}/content/{escape(media_type)}/schema", document)
    return document


def check_signed(answer: Answer) -> None:
    assert answer.signature_header is not None, "every answer carries a valid signature"
    assert answer.signature_header["request_id"] == answer.headers["X-Request-Id"]


def check_verification(answer: Answer) -> dict[str, Any]:
    assert answer.status == 200, answer.body[:500]
    check_signed(answer)
    document = check_against_openapi(answer, "post", PATH)
    assert_valid((SCHEMAS / "verification-response.json").as_uri(), document)
    assert document["request_id"] == answer.headers["X-Request-Id"]
    assert isinstance(document, dict)
    return document


def check_problem(answer: Answer, status: int, code: str, method: str | None = None,
                  path: str | None = None) -> dict[str, Any]:
    check_signed(answer)
    assert answer.headers["Content-Type"].split(";")[0] == "application/problem+json"
    document = orjson.loads(answer.body)
    assert_valid((SCHEMAS / "problem.json").as_uri(), document)
    assert (answer.status, document["status"], document["code"]) == (status, status, code), document
    assert document["request_id"] == answer.headers["X-Request-Id"]
    if method is not None and path is not None:
        check_against_openapi(answer, method, path)
    assert isinstance(document, dict)
    return document


async def raw_request(stack: Stack, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> Answer:
    async with aiohttp.ClientSession() as session, session.request(
        method, stack.gateway.url + path, data=body, headers=headers or {}
    ) as resp:
        raw = await resp.read()
        answer_headers = CIMultiDict(resp.headers)
    return Answer(resp.status, raw, answer_headers, await stack.client.verify_signature(answer_headers, raw))


def signed_post_headers(stack: Stack, body: bytes) -> dict[str, str]:
    token = client_assertion(stack.client.key, stack.client.client_id, stack.settings.gateway_id, "POST", PATH, body)
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def catalogue_file() -> dict[str, Any]:
    data = read(SCHEMAS / "errors.json")
    assert isinstance(data, dict)
    return data


def refs(node: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """(where, $ref) for every reference in a JSON document."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield pointer, node["$ref"]
        for key, value in node.items():
            yield from refs(value, f"{pointer}/{escape(key)}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{pointer}/{i}")


# ------------------------------------------------------------------------ (a) the OpenAPI document is valid


def test_openapi_against_the_openapi_3_1_meta_schema() -> None:
    spec_validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is not installed")
    spec_validator.validate(openapi(), base_uri=OPENAPI.as_uri(), cls=spec_validator.OpenAPIV31SpecValidator)


def test_openapi_essentials() -> None:
    """What the meta-schema cannot say: the gateway's own promises about its contract."""
    doc = openapi()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["description"] and doc["info"]["version"] == "0.1.0"
    assert [s["url"] for s in doc["servers"]] == ["http://127.0.0.1:8080"]

    scheme = doc["components"]["securitySchemes"]["clientAssertion"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for claim in ("iss", "sub", "aud", "iat", "exp", "jti", "htm", "htu", "body_sha256"):
        assert f"`{claim}`" in scheme["description"], claim
    assert "`exp` ≤ `iat` + 300" in scheme["description"]

    post = doc["paths"][PATH]["post"]
    assert post["security"] == [{"clientAssertion": []}]
    assert post["requestBody"]["required"] is True
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "verification-request.json"}
    assert set(post["responses"]) == POST_STATUSES
    _, ok = deref(f"/paths/{escape(PATH)}/post/responses/200")
    assert ok["content"]["application/json"]["schema"] == {"$ref": "verification-response.json"}

    operation_ids = [op["operationId"] for _, _, op in operations()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, method, operation in operations():
        if path.startswith("/v1/citizen/"):  # citizens: a token of their identity provider (docs/citizens.md)
            assert operation["security"] == [{"citizenToken": []}], f"{method.upper()} {path}"
        elif path.startswith("/v1/"):
            assert operation["security"] == [{"clientAssertion": []}], f"{method.upper()} {path} is signed"
        else:
            assert operation["security"] == [], f"{method.upper()} {path} is public"
        for status in operation["responses"]:
            where, response = deref(f"/paths/{escape(path)}/{method}/responses/{status}")
            assert response["description"], where
            assert set(response.get("headers", {})) >= COMMON_HEADERS, f"{where}: signature and request id"
            for name in COMMON_HEADERS:
                assert deref(f"{where}/headers/{escape(name)}")[1]["required"] is True
            assert "Log-Checkpoint" in response["headers"], f"{where}: on every answer once there is a checkpoint"
            assert response.get("content"), f"{where}: every answer has a body"
            if not status.startswith("2") and (path, status) != ("/readyz", "503"):
                assert set(response["content"]) == {"application/problem+json"}, where
    _, unauthenticated = deref(f"/paths/{escape(PATH)}/post/responses/401")
    assert "WWW-Authenticate" in unauthenticated["headers"]


def test_every_ref_resolves() -> None:
    for path in json_files():
        document = read(path)
        for where, ref in refs(document):
            target, _, fragment = ref.partition("#")
            name = path.relative_to(SCHEMAS).as_posix()
            if target:
                assert "://" not in target and not target.startswith(("/", "urn:")), (
                    f"{name}{where}: external references are relative file names, got {ref!r}")
                target_path = (path.parent / target).resolve()
                assert target_path.is_file(), f"{name}{where}: {ref!r} names no file"
                target_document = read(target_path)
            else:
                target_document = document
            assert fragment == "" or fragment.startswith("/"), f"{name}{where}: {ref!r}"
            try:
                pointer_get(target_document, fragment)
            except (AssertionError, IndexError, ValueError) as exc:
                raise AssertionError(f"{name}{where}: {ref!r} does not resolve") from exc
            # and the JSON Schema machinery resolves it the same way
            registry().resolver(base_uri=path.as_uri()).lookup(ref)


def test_openapi_inline_schemas_are_valid() -> None:
    found = 0
    for _, node in _schema_objects(openapi()):
        Draft202012Validator.check_schema(node)
        found += 1
    assert found > 10


def _schema_objects(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{pointer}/{escape(key)}"
            if key == "schema" or pointer == "/components/schemas":
                yield here, value
            else:
                yield from _schema_objects(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schema_objects(value, f"{pointer}/{i}")


# ---------------------------------------------------------------------- (b) every JSON Schema is a schema


def test_all_json_schemas_are_valid_draft_2020_12() -> None:
    names = {p.relative_to(SCHEMAS).as_posix() for p in schema_files()}
    assert {"verification-request.json", "verification-response.json", "problem.json"} <= names
    assert {n for n in names if n.startswith("records/")} == {
        f"records/{kind}.json"
        for kind in ("coverage", "declarations", "enrolment", "family", "person", "social_registration")}
    for path in schema_files():
        schema = read(path)
        assert schema.get("$schema") == "https://json-schema.org/draft/2020-12/schema", path.name
        Draft202012Validator.check_schema(schema)


# ----------------------------------------------------------------------- (c) real answers follow the contract


@pytest.mark.parametrize("name", FIXTURE_NAMES)
async def test_full_verification_of_each_fixture_household(stack: Stack, name: str) -> None:
    household = stack.population.fixture(name)
    answer = await stack.client.verify({"idcs": household.father.idcs}, PURPOSE, f"CASE-OPENAPI-{name}")
    doc = check_verification(answer)
    assert list(doc["checks"]) == list(stack.settings.checks.names)
    assert doc["subject"] == {"idcs": household.father.idcs}
    # MASSAR is asked only about children of school age: the elderly couple's son is 31, the newborn's
    # household has a two-year-old and a baby
    asked = ["civil_registry", "health", "employment", "social_registry"] + (
        [] if name in ("elderly_couple", "newborn") else ["education"])
    assert {s["name"]: s["status"] for s in doc["sources"]} == dict.fromkeys(asked, "ok")
    assert doc["complete"] is True and {c["status"] for c in doc["checks"].values()} == {"verified"}


async def test_verification_by_cin_with_some_checks(stack: Stack) -> None:
    father = stack.population.fixture("salaried_parent").father
    assert father.cin is not None
    doc = check_verification(await stack.client.verify({"cin": father.cin}, PURPOSE, "CASE-OPENAPI-CIN",
                                                       ["employment", "identity"]))
    assert list(doc["checks"]) == ["employment", "identity"] and doc["subject"] == {"idcs": father.idcs}


async def test_verification_with_the_education_ministry_down(stack: Stack) -> None:
    stack.simulators.controls["education"].fail = True
    household = stack.population.fixture("deceased_father")
    doc = check_verification(await stack.client.verify({"idcs": household.mother.idcs}, PURPOSE, "CASE-DOWN"))
    assert doc["complete"] is False
    assert doc["checks"]["schooling"]["status"] == "partial"
    education = next(s for s in doc["sources"] if s["name"] == "education")
    assert (education["status"], education["error"]) == ("unavailable", "source_unavailable")


@pytest.mark.parametrize("source", ["civil_registry", "health", "employment"])
async def test_verification_with_another_source_down(stack: Stack, source: str) -> None:
    stack.simulators.controls[source].fail = True
    household = stack.population.fixture("deceased_father")
    doc = check_verification(await stack.client.verify({"idcs": household.mother.idcs}, PURPOSE, "CASE-DOWN"))
    assert doc["complete"] is False
    assert {s["name"]: s["status"] for s in doc["sources"]}[source] == "unavailable"
    assert "unavailable" in {c["status"] for c in doc["checks"].values()}


async def test_verification_by_cin_with_the_civil_registry_down(stack: Stack) -> None:
    stack.simulators.controls["civil_registry"].fail = True
    father = stack.population.fixture("amo_tadamon").father
    assert father.cin is not None
    doc = check_verification(await stack.client.verify({"cin": father.cin}, PURPOSE, "CASE-NO-REGISTRY"))
    assert doc["subject"] == {"cin": father.cin}
    assert {c["status"] for c in doc["checks"].values()} == {"unavailable"}


async def test_verification_with_a_source_timing_out(stack: Stack) -> None:
    stack.simulators.controls["employment"].delay_s = 2.5  # the connectors' timeout is 1.5 s in tests
    household = stack.population.fixture("salaried_parent")
    doc = check_verification(await stack.client.verify({"idcs": household.father.idcs}, PURPOSE, "CASE-SLOW",
                                                       ["identity", "employment"]))
    assert {s["name"]: s["status"] for s in doc["sources"]}["employment"] == "timeout"
    assert doc["checks"]["employment"] == {"status": "unavailable", "verdict": None, "facts": [],
                                           "unverified": ["employment"]}


async def test_the_schemas_reject_what_the_gateway_must_never_send(stack: Stack) -> None:
    """A real answer, altered in ways the code never alters it: each alteration is refused (no vacuous schema)."""
    household = stack.population.fixture("deceased_father")
    real = check_verification(await stack.client.verify({"idcs": household.mother.idcs}, PURPOSE, "CASE-NEG"))
    response = validator((SCHEMAS / "verification-response.json").as_uri())

    def broken(change: Any) -> dict[str, Any]:
        doc = copy.deepcopy(real)
        change(doc)
        return doc

    checks = "checks"
    alterations = {
        "unknown member": lambda d: d.update(extra=1),
        "unknown check": lambda d: d[checks].update(credit_score=d[checks]["identity"]),
        "no checks": lambda d: d.update(checks={}),
        "identity partial": lambda d: d[checks]["identity"].update(status="partial", unverified=["1234567890"]),
        "unavailable with a verdict": lambda d: d[checks]["schooling"].update(status="unavailable"),
        "verified with unverified items": lambda d: d[checks]["employment"].update(unverified=["1234567890"]),
        "verdict member added": lambda d: d[checks]["household"]["verdict"].update(poor=True),
        "verdict member missing": lambda d: d[checks]["health_coverage"]["verdict"].pop("amo_tadamon"),
        "wrong scheme": lambda d: d[checks]["health_coverage"]["verdict"].update(scheme="private"),
        "fact without source": lambda d: d[checks]["identity"]["facts"][0].pop("source"),
        "fact of another check": lambda d: d[checks]["identity"]["facts"][0].update(name="massar_code"),
        "fact about no one": lambda d: d[checks]["identity"]["facts"][0].update(about="someone"),
        "source status": lambda d: d["sources"][0].update(status="down"),
        "error on an ok source": lambda d: d["sources"][0].update(error="source_timeout"),
        "checked_at": lambda d: d.update(checked_at="yesterday"),
        "request_id": lambda d: d.update(request_id="not-an-id"),
        "subject with two identifiers": lambda d: d["subject"].update(cin="AB123456"),
    }
    for name, change in alterations.items():
        assert not response.is_valid(broken(change)), f"the response schema accepts: {name}"

    problem = validator((SCHEMAS / "problem.json").as_uri())
    refusal = orjson.loads((await raw_request(stack, "POST", PATH, b"{}", {"Content-Type": "application/json"})).body)
    assert problem.is_valid(refusal)
    for name, doc in {
        "unknown code": {**refusal, "code": "teapot"},
        "unknown member": {**refusal, "trace": "..."},
        "no request id": {k: v for k, v in refusal.items() if k != "request_id"},
        "foreign type": {**refusal, "type": "about:blank"},
    }.items():
        assert not problem.is_valid(doc), f"the problem schema accepts: {name}"


async def test_unknown_subject_is_a_404_problem(stack: Stack) -> None:
    answer = await stack.client.verify({"idcs": stack.population.unknown_idcs()}, PURPOSE, "CASE-404")
    check_problem(answer, 404, "subject_not_found", "post", PATH)


async def test_no_authorization_is_a_401_problem(stack: Stack) -> None:
    body = orjson.dumps({"subject": {"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                         "purpose": PURPOSE, "case_ref": "CASE-401"})
    answer = await raw_request(stack, "POST", PATH, body, {"Content-Type": "application/json"})
    check_problem(answer, 401, "unauthenticated", "post", PATH)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_invalid_assertion_is_a_401_problem(stack: Stack) -> None:
    body = b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A"}'
    answer = await raw_request(stack, "POST", PATH, body,
                               {"Content-Type": "application/json", "Authorization": "Bearer not.a.jwt"})
    check_problem(answer, 401, "invalid_assertion", "post", PATH)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_request"),
        (b'{"subject":{"idcs":"12345"},"purpose":"asd.eligibility","case_ref":"A"}', "invalid_request"),
        (b'{"subject":{"idcs":"1234567890"},"purpose":"marketing","case_ref":"A"}', "unknown_purpose"),
    ],
)
async def test_bad_body_is_a_400_problem(stack: Stack, body: bytes, code: str) -> None:
    answer = await raw_request(stack, "POST", PATH, body, signed_post_headers(stack, body))
    check_problem(answer, 400, code, "post", PATH)


async def test_forbidden_check_is_a_403_problem(stack: Stack) -> None:
    async with stack.client_for("cnss.amo-tadamon") as tadamon:
        answer = await tadamon.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                      "amo.tadamon.eligibility", "T-1", ["schooling"])
    check_problem(answer, 403, "forbidden_check", "post", PATH)


async def test_oversized_body_is_a_413_problem(stack: Stack) -> None:
    body = b'{"pad":"' + b"x" * (stack.settings.max_body_bytes + 10) + b'"}'
    answer = await raw_request(stack, "POST", PATH, body, signed_post_headers(stack, body))
    check_problem(answer, 413, "body_too_large", "post", PATH)


async def test_wrong_media_type_is_a_415_problem(stack: Stack) -> None:
    body = b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A"}'
    answer = await raw_request(stack, "POST", PATH, body,
                               {**signed_post_headers(stack, body), "Content-Type": "text/plain"})
    check_problem(answer, 415, "unsupported_media_type", "post", PATH)


async def test_access_log_down_is_a_503_problem(stack: Stack) -> None:
    await stack.gateway.runner.app[RUNTIME].access_log.close()
    answer = await stack.client.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs}, PURPOSE,
                                       "CASE-503", ["identity"])
    check_problem(answer, 503, "audit_unavailable", "post", PATH)
    readiness = await raw_request(stack, "GET", "/readyz")  # a readiness document, not a problem
    assert readiness.status == 503
    check_signed(readiness)
    assert check_against_openapi(readiness, "get", "/readyz")["checks"]["store"] is False


async def test_unknown_route_and_method_are_problems(stack: Stack) -> None:
    check_problem(await raw_request(stack, "GET", "/v1/nothing-here"), 404, "not_found")
    check_problem(await raw_request(stack, "GET", PATH), 405, "method_not_allowed")
    check_problem(await raw_request(stack, "DELETE", "/healthz"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/.well-known/jwks.json"])
async def test_public_resources_follow_the_contract(stack: Stack, path: str) -> None:
    answer = await raw_request(stack, "GET", path)
    assert answer.status == 200
    check_signed(answer)
    check_against_openapi(answer, "get", path)


# ------------------------------------------------------------------ (d) the problem schema and the catalogue


def test_problem_codes_are_the_catalogue() -> None:
    catalogue = catalogue_file()
    codes = [e["code"] for e in catalogue["errors"]]
    problem = read(SCHEMAS / "problem.json")
    enum = problem["properties"]["code"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == set(codes)
    type_schema = {"$schema": problem["$schema"], **problem["properties"]["type"]}
    for code in codes:
        assert Draft202012Validator(type_schema).is_valid(catalogue["type_prefix"] + code), code


def test_openapi_problem_responses_agree_with_the_catalogue() -> None:
    status_of = {e["code"]: e["status"] for e in catalogue_file()["errors"]}
    for name, schema in openapi()["components"]["schemas"].items():
        if not name.startswith("Problem") or name == "Problem":
            continue
        status = schema["properties"]["status"]["const"]
        assert name == f"Problem{status}"
        for code in schema["properties"]["code"]["enum"]:
            assert status_of.get(code) == status, f"{name}: {code} is not a {status} in the catalogue"


# ---------------------------------------------------------------------- (e) the routes and the paths agree


def test_routes_and_openapi_paths_agree(tmp_path: Path) -> None:
    app = create_app(load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path)}))
    registered = {(route.resource.canonical, route.method.lower())
                  for route in app.router.routes() if route.resource is not None}
    # aiohttp answers HEAD wherever it answers GET (``add_get(allow_head=True)``); the document says so once
    gets = {path for path, method in registered if method == "get"}
    registered = {(path, method) for path, method in registered if not (method == "head" and path in gets)}
    # the officers' console is HTML for people, not part of the API contract (docs/officers.md)
    registered = {(path, method) for path, method in registered if not path.startswith("/console")}
    documented = {(path, method) for path, method, _ in operations()}
    assert registered == documented
    assert {path for path, _ in registered} == set(openapi()["paths"])


def test_contract_files_have_no_duplicate_keys() -> None:
    """A duplicate key in a JSON document silently wins over the first: refuse it."""
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys {sorted(k for k in keys if keys.count(k) > 1)}"
        return dict(pairs)

    for path in json_files():
        json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
