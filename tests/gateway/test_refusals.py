"""Refusals: each a signed RFC 9457 problem with a stable code, each logged, and the service keeps serving."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from gateway.client import GatewayClient, client_assertion
from gateway.crypto import keys
from gateway.errors import catalogue
from tests.gateway.conftest import Stack

PATH = "/v1/verifications"


def body_for(stack: Stack, **over: Any) -> bytes:
    document: dict[str, Any] = {
        "subject": {"idcs": stack.population.fixture("amo_tadamon").father.idcs},
        "purpose": "asd.eligibility", "case_ref": "CASE-1", "checks": ["identity"],
    }
    document.update(over)
    return orjson.dumps(document)


async def raw_post(stack: Stack, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as session, session.post(
        stack.gateway.url + PATH, data=body, headers={"Content-Type": "application/json", **headers}
    ) as resp:
        raw = await resp.read()
        signature = await stack.client.verify_signature(resp.headers, raw)  # type: ignore[arg-type]
        assert signature is not None, "refusals are signed too"
        assert resp.content_type == "application/problem+json"
        return resp.status, orjson.loads(raw), resp.headers


def bearer(stack: Stack, body: bytes, key: keys.SigningKey | None = None, **claims: Any) -> dict[str, str]:
    key = key or stack.client.key
    now = int(time.time())
    payload = {
        "iss": "anss.asd", "sub": "anss.asd", "aud": stack.settings.gateway_id, "iat": now, "exp": now + 60,
        "jti": f"j{time.monotonic_ns()}", "htm": "POST", "htu": PATH,
        "body_sha256": jwt.utils.base64url_encode(__import__("hashlib").sha256(body).digest()).decode(),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return {"Authorization": "Bearer " + jwt.encode(payload, key.private, algorithm=key.alg,
                                                     headers={"kid": key.kid})}


def bearer_claims_dict(stack: Stack, body: bytes) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "anss.asd", "sub": "anss.asd", "aud": stack.settings.gateway_id, "iat": now, "exp": now + 60,
            "jti": f"j{time.monotonic_ns()}", "htm": "POST", "htu": PATH,
            "body_sha256": keys.b64url(__import__("hashlib").sha256(body).digest())}


def bearer_claims(stack: Stack, body: bytes) -> bytes:
    return orjson.dumps(bearer_claims_dict(stack, body))


def signed_raw(stack: Stack, claims: bytes) -> dict[str, str]:
    """A compact JWS over exactly ``claims`` (bytes a JSON encoder would not write), properly signed."""
    key = stack.client.key
    protected = keys.b64url(orjson.dumps({"alg": key.alg, "kid": key.kid, "typ": "JWT"}))
    signing_input = f"{protected}.{keys.b64url(claims)}".encode()
    signature = key.private.sign(signing_input)  # type: ignore[call-arg]
    return {"Authorization": f"Bearer {signing_input.decode()}.{keys.b64url(signature)}"}


async def assert_still_serving(stack: Stack) -> None:
    answer = await stack.client.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                       "asd.eligibility", "CASE-OK", ["identity"])
    assert answer.status == 200


def assert_problem(status: int, doc: dict[str, Any], expected_status: int, code: str) -> None:
    assert (status, doc["code"]) == (expected_status, code), doc
    assert code in catalogue()
    assert doc["status"] == expected_status and doc["title"] and doc["detail"] and doc["request_id"]
    assert doc["type"] == catalogue()[code]["type"]
    assert "Traceback" not in doc["detail"]


async def last_entry(stack: Stack) -> dict[str, Any]:
    import sqlite3

    conn = sqlite3.connect(stack.settings.audit_database)
    try:
        row = conn.execute("SELECT entry FROM access_log ORDER BY idx DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return dict(orjson.loads(row[0]))


CASES = {
    "no_authorization": (401, "unauthenticated"),
    "not_bearer": (401, "unauthenticated"),
    "garbage_token": (401, "invalid_assertion"),
    "unknown_key": (401, "invalid_assertion"),
    "other_clients_key": (401, "invalid_assertion"),
    "wrong_audience": (401, "invalid_assertion"),
    "expired": (401, "invalid_assertion"),
    "too_long_lived": (401, "invalid_assertion"),
    "wrong_method": (401, "invalid_assertion"),
    "wrong_path": (401, "invalid_assertion"),
    "body_tampered": (401, "invalid_assertion"),
    "missing_jti": (401, "invalid_assertion"),
    "sub_differs": (401, "invalid_assertion"),
    "alg_none": (401, "invalid_assertion"),
    "alg_hs256": (401, "invalid_assertion"),
    "signature_altered": (401, "invalid_assertion"),
    "issued_in_future": (401, "invalid_assertion"),
    "not_before_future": (401, "invalid_assertion"),
    "exp_not_a_number": (401, "invalid_assertion"),
    "exp_infinite": (401, "invalid_assertion"),
    "critical_extension": (401, "invalid_assertion"),
    "audience_list": (401, "invalid_assertion"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_authentication_refusals(stack: Stack, case: str) -> None:
    body = body_for(stack)
    now = int(time.time())
    headers: dict[str, str]
    if case == "no_authorization":
        headers = {}
    elif case == "not_bearer":
        headers = {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}
    elif case == "garbage_token":
        headers = {"Authorization": "Bearer not.a.jwt"}
    elif case == "unknown_key":
        headers = bearer(stack, body, key=keys.generate())
    elif case == "other_clients_key":
        other = keys.load_or_create(stack.settings.state_dir / "clients" / "cnss.amo-tadamon.pem")
        headers = bearer(stack, body, key=other)
    elif case == "wrong_audience":
        headers = bearer(stack, body, aud="another-gateway")
    elif case == "expired":
        headers = bearer(stack, body, iat=now - 400, exp=now - 200)
    elif case == "too_long_lived":
        headers = bearer(stack, body, exp=now + 3600)
    elif case == "wrong_method":
        headers = bearer(stack, body, htm="GET")
    elif case == "wrong_path":
        headers = bearer(stack, body, htu="/v1/other")
    elif case == "body_tampered":
        headers = bearer(stack, body)
        body = body_for(stack, case_ref="CASE-TAMPERED")
    elif case == "missing_jti":
        headers = bearer(stack, body, jti=None)
    elif case == "sub_differs":
        headers = bearer(stack, body, sub="cnss.amo-tadamon")
    elif case == "signature_altered":  # the claims as signed, one bit of the signature flipped
        protected, payload, signature = bearer(stack, body)["Authorization"].split(" ")[1].split(".")
        raw = bytearray(keys.b64url_decode(signature))
        raw[7] ^= 0x01
        headers = {"Authorization": f"Bearer {protected}.{payload}.{keys.b64url(bytes(raw))}"}
    elif case == "issued_in_future":
        headers = bearer(stack, body, iat=now + 200, exp=now + 260)
    elif case == "not_before_future":
        headers = bearer(stack, body, nbf=now + 200)
    elif case == "exp_not_a_number":
        headers = bearer(stack, body, exp=str(now + 60))
    elif case == "exp_infinite":  # JSON parsers that accept `Infinity` must not make it a valid exp
        headers = signed_raw(stack, bearer_claims(stack, body).replace(b'"exp":', b'"exp":Infinity,"x":'))
    elif case == "critical_extension":
        key = stack.client.key
        token = jwt.encode(bearer_claims_dict(stack, body), key.private, algorithm=key.alg,
                           headers={"kid": key.kid, "crit": ["exp"]})
        headers = {"Authorization": f"Bearer {token}"}
    elif case == "audience_list":  # valid JWT, but our contract wants exactly one audience
        headers = bearer(stack, body, aud=[stack.settings.gateway_id, "another-gateway"])
    elif case == "alg_none":
        token = jwt.encode({"iss": "anss.asd"}, None, algorithm="none")  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {token}"}
    else:  # alg_hs256: the client's *public* key offered as an HMAC secret
        import hashlib
        import hmac

        real = bearer(stack, body)["Authorization"].split(" ")[1].split(".")
        forged_header = keys.b64url(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": stack.client.key.kid}))
        signing_input = f"{forged_header}.{real[1]}".encode()
        mac = hmac.new(keys.public_pem(stack.client.key.public), signing_input, hashlib.sha256).digest()
        headers = {"Authorization": f"Bearer {forged_header}.{real[1]}.{keys.b64url(mac)}"}
    status, doc, resp_headers = await raw_post(stack, body, headers)
    assert_problem(status, doc, *CASES[case])
    # RFC 6750 section 3: error="invalid_token" only when a token was sent and refused
    assert resp_headers.get("WWW-Authenticate") == ('Bearer realm="anss-gateway"' if CASES[case][1] == "unauthenticated"
                                                    else 'Bearer realm="anss-gateway", error="invalid_token"')
    entry = await last_entry(stack)
    assert (entry["status"], entry["outcome"], entry["request_id"]) == (CASES[case][0], CASES[case][1],
                                                                       doc["request_id"])
    await assert_still_serving(stack)


async def raw_get(stack: Stack, target: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """``GET target`` with the request line's target exactly as given (an HTTP client may tidy a lone "?")."""
    url = stack.gateway.url.removeprefix("http://")
    host, port = url.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [f"GET {target} HTTP/1.1", f"Host: {url}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), orjson.loads(body)


async def test_htu_is_the_target_as_sent(stack: Stack) -> None:
    """security.md section 1: ``htu`` is the path with its query exactly as sent — a lone "?" included, which
    the server's parsed path drops; the parsed form is accepted too, any other target is not."""
    for sent, htu, status in (("/v1/services?", "/v1/services?", 200), ("/v1/services?", "/v1/services", 200),
                              ("/v1/services", "/v1/services?", 401), ("/v1/services?", "/v1/services?x", 401)):
        code, document = await raw_get(stack, sent, bearer(stack, b"", htm="GET", htu=htu))
        assert code == status, (sent, htu, document)
        if status == 401:
            assert document["code"] == "invalid_assertion"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_not_json(constant: str) -> None:
    """RFC 8259 section 6: no NaN or infinities — refused as JSON, before any schema looks at them."""
    from gateway.api.validation import parse_json
    from gateway.errors import BadRequest
    from gateway.federation.checks.registry import builtin

    body = b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A","as_of":' + \
        constant.encode() + b"}"
    with pytest.raises(BadRequest, match="not valid UTF-8 JSON"):
        parse_json(body, "application/json", "verification-request.json", builtin())


async def test_check_without_right_is_403(stack: Stack) -> None:
    tadamon = stack.client_for("cnss.amo-tadamon")
    async with tadamon:
        answer = await tadamon.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                      "amo.tadamon.eligibility", "T-2", ["schooling"])
        assert_problem(answer.status, answer.json(), 403, "forbidden_check")
        assert answer.signature_header is not None
        entry = await last_entry(stack)
        assert entry["client"] == "cnss.amo-tadamon" and entry["outcome"] == "forbidden_check"
        assert entry["sources"] == [], "no administration is contacted for a refused request"
        answer = await tadamon.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                      "asd.eligibility", "T-3", ["identity"])
        assert_problem(answer.status, answer.json(), 403, "forbidden_purpose")
    await assert_still_serving(stack)


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("not_json", b"{not json", "invalid_request"),
        ("array", b"[]", "invalid_request"),
        ("unknown_field", b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A","x":1}',
         "invalid_request"),
        ("duplicate_key", b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","purpose":"x",'
         b'"case_ref":"A"}', "invalid_request"),
        ("bad_idcs", b'{"subject":{"idcs":"12345"},"purpose":"asd.eligibility","case_ref":"A"}', "invalid_request"),
        ("two_identifiers", b'{"subject":{"idcs":"1234567890","cin":"AB123456"},"purpose":"asd.eligibility",'
         b'"case_ref":"A"}', "invalid_request"),
        ("unknown_check", b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A",'
         b'"checks":["credit_score"]}', "invalid_request"),
        ("deep", b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A","checks":'
         + b"[" * 50 + b"]" * 50 + b"}", "invalid_request"),
        ("unknown_purpose", b'{"subject":{"idcs":"1234567890"},"purpose":"marketing","case_ref":"A"}',
         "unknown_purpose"),
        ("not_utf8", b'{"subject":{"idcs":"\xff\xfe"},"purpose":"asd.eligibility","case_ref":"A"}',
         "invalid_request"),
    ],
)
async def test_malformed_bodies_are_400(stack: Stack, name: str, body: bytes, code: str) -> None:
    status, doc, _ = await raw_post(stack, body, bearer(stack, body))
    assert_problem(status, doc, 400, code)
    entry = await last_entry(stack)
    assert entry["outcome"] == code and entry["client"] == "anss.asd"
    await assert_still_serving(stack)


async def test_oversized_body_is_413(stack: Stack) -> None:
    body = b'{"pad":"' + b"x" * (stack.settings.max_body_bytes + 10) + b'"}'
    status, doc, _ = await raw_post(stack, body, bearer(stack, body))
    assert_problem(status, doc, 413, "body_too_large")
    entry = await last_entry(stack)
    assert (entry["outcome"], entry["request_id"]) == ("body_too_large", doc["request_id"])
    await assert_still_serving(stack)


async def test_wrong_content_type_is_415(stack: Stack) -> None:
    body = body_for(stack)
    status, doc, _ = await raw_post(stack, body, {**bearer(stack, body), "Content-Type": "text/plain"})
    assert_problem(status, doc, 415, "unsupported_media_type")
    entry = await last_entry(stack)
    assert (entry["outcome"], entry["client"]) == ("unsupported_media_type", "anss.asd")
    await assert_still_serving(stack)


async def test_unknown_route_and_method(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(stack.gateway.url + "/v1/nothing-here") as resp:
            doc = orjson.loads(await resp.read())
            assert_problem(resp.status, doc, 404, "not_found")
        async with session.get(stack.gateway.url + PATH) as resp:
            doc = orjson.loads(await resp.read())
            assert_problem(resp.status, doc, 405, "method_not_allowed")
            assert resp.headers["Allow"] == "POST"


async def test_client_helper_assertion_matches_contract(stack: Stack) -> None:
    """The bundled client's assertion is exactly what the gateway accepts (a contract check, both ways)."""
    body = body_for(stack)
    token = client_assertion(stack.client.key, "anss.asd", stack.settings.gateway_id, "POST", PATH, body)
    claims = jwt.decode(token, stack.client.key.public, algorithms=["EdDSA"], audience="anss-gateway")
    assert claims["exp"] - claims["iat"] <= 300 and claims["htu"] == PATH
    status, _, _ = await raw_post_ok(stack, body, {"Authorization": f"Bearer {token}"})
    assert status == 200


async def raw_post_ok(stack: Stack, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        stack.gateway.url + PATH, data=body, headers={"Content-Type": "application/json", **headers}
    ) as resp:
        return resp.status, await resp.read(), resp.headers


async def test_no_answer_without_access_log_entry(stack: Stack) -> None:
    """If the access log cannot record the request, no data leaves the gateway (503, nothing answered)."""
    runtime = stack.gateway.runner.app[__import__("gateway.web.state", fromlist=["RUNTIME"]).RUNTIME]
    await runtime.access_log.close()  # the store is gone: appends fail
    answer = await stack.client.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                       "asd.eligibility", "CASE-X", ["identity"])
    assert_problem(answer.status, answer.json(), 503, "audit_unavailable")
    assert b"birth_date" not in answer.body


async def test_a_log_that_reads_but_cannot_be_written_is_not_ready(stack: Stack) -> None:
    """deploy.md section 5: readiness means the access log answers. A log that still reads but refuses a write (a
    full or read-only disk) refuses every answer (503): the pod must leave the Service, for a while at least."""
    import sqlite3

    runtime = stack.gateway.runner.app[__import__("gateway.web.state", fromlist=["RUNTIME"]).RUNTIME]
    holder = sqlite3.connect(stack.settings.audit_database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock: reads go on, no entry can be written
    try:
        answer = await stack.client.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                           "asd.eligibility", "CASE-RO", ["identity"])
        assert_problem(answer.status, answer.json(), 503, "audit_unavailable")
        async with aiohttp.ClientSession() as session, session.get(stack.gateway.url + "/readyz") as resp:
            assert resp.status == 503 and (await resp.json())["checks"]["store"] is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert runtime.append_failed_at is not None
    runtime.append_failed_at -= 11  # the hold is over: ready again, and traffic finds the log writable
    async with aiohttp.ClientSession() as session, session.get(stack.gateway.url + "/readyz") as resp:
        assert resp.status == 200
    await assert_still_serving(stack)
    assert runtime.append_failed_at is None


async def test_second_client_instance(stack: Stack) -> None:
    async with GatewayClient(stack.gateway.url, "anss.asd", stack.client.key) as other:
        answer = await other.verify({"idcs": stack.population.fixture("deceased_father").mother.idcs},
                                    "asd.eligibility", "CASE-2", ["household"])
    assert answer.status == 200 and answer.signature_header is not None
