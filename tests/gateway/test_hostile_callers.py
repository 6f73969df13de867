"""Hostile callers: each case a clear, signed problem+json that is logged — and the service keeps serving."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.crypto.jws import request_digest, verify_detached
from gateway.crypto.keys import public_from_jwk
from tests.gateway.conftest import Stack
from tests.gateway.test_refusals import PATH, assert_problem, assert_still_serving, bearer, last_entry, raw_post

IDCS_BODY = '{{"subject":{{"idcs":{idcs}}},"purpose":"asd.eligibility","case_ref":{case_ref}}}'


def body(idcs: str = '"1234567890"', case_ref: str = '"A-1"') -> bytes:
    return IDCS_BODY.format(idcs=idcs, case_ref=case_ref).encode()


BODIES: dict[str, bytes] = {
    "idcs_trailing_newline": body(idcs='"1234567890\\n"'),
    "idcs_arabic_indic_digits": body(idcs='"\\u0661\\u0662\\u0663\\u0664\\u0665\\u0666\\u0667\\u0668\\u0669\\u0660"'),
    "idcs_fullwidth_digits": body(idcs='"１２３４５６７８９０"'),
    "idcs_number_not_string": body(idcs="1234567890"),
    "idcs_null_byte": body(idcs='"12345\\u00006789"'),
    "case_ref_rtl_override": body(case_ref='"A-1\\u202egnp.exe"'),
    "case_ref_zero_width": body(case_ref='"A\\u200b1"'),
    "case_ref_too_long": body(case_ref='"' + "A" * 65 + '"'),
    "huge_checks_array": b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A",'
                         b'"checks":[' + b",".join([b'"identity"'] * 5000) + b"]}",
    "lone_surrogate": body(case_ref='"A\\ud800"'),
    "empty_body": b"",
    "json_scalar": b"42",
    "nan_literal": b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":NaN}',
    "bom_prefixed": b"\xef\xbb\xbf" + body(),
}


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_hostile_bodies(stack: Stack, name: str) -> None:
    payload = BODIES[name]
    status, doc, _ = await raw_post(stack, payload, bearer(stack, payload))
    assert_problem(status, doc, 400, "invalid_request")
    entry = await last_entry(stack)
    assert (entry["outcome"], entry["status"], entry["request_id"]) == ("invalid_request", 400, doc["request_id"])
    assert entry["sources"] == [], "nothing is asked of any administration"
    await assert_still_serving(stack)


async def test_two_authorization_headers_are_refused(stack: Stack) -> None:
    payload = body()
    good = bearer(stack, payload)["Authorization"]
    async with aiohttp.ClientSession() as session:
        headers = [("Authorization", good), ("Authorization", good), ("Content-Type", "application/json")]
        async with session.post(stack.gateway.url + PATH, data=payload, headers=headers) as resp:
            doc = orjson.loads(await resp.read())
            assert_problem(resp.status, doc, 401, "unauthenticated")
            assert "exactly one" in doc["detail"]
    assert (await last_entry(stack))["outcome"] == "unauthenticated"
    await assert_still_serving(stack)


async def test_oversized_header_is_431(stack: Stack) -> None:
    payload = body()
    headers = {**bearer(stack, payload), "X-Padding": "x" * (stack.settings.max_header_bytes + 1)}
    status, doc, _ = await raw_post(stack, payload, headers)
    assert_problem(status, doc, 431, "headers_too_large")
    assert (await last_entry(stack))["outcome"] == "headers_too_large"
    await assert_still_serving(stack)


async def test_oversized_authorization_is_431(stack: Stack) -> None:
    payload = body()
    status, doc, _ = await raw_post(stack, payload, {"Authorization": "Bearer " + "a" * 9000})
    assert_problem(status, doc, 431, "headers_too_large")


async def test_a_header_past_the_parsers_own_limit_is_431_too(stack: Stack) -> None:
    """Beyond the HTTP parser's field limit (16 KiB), aiohttp refuses before any handler: still a 431, as the
    configuration promises for anything larger than max_header_bytes (not the parser's 400)."""
    reader, writer = await _open(stack)
    writer.write(f"GET /v1/citizen/access-log HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {'a' * 20000}\r\n"
                 "\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 431") or raw.startswith(b"HTTP/1.0 431"), raw[:200]
    assert b"headers_too_large" in raw and b"X-JWS-Signature" in raw
    await assert_still_serving(stack)


async def _open(stack: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = stack.gateway.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_slow_body_gets_408_and_is_logged(stack: Stack) -> None:
    payload = body()
    auth = bearer(stack, payload)["Authorization"]
    reader, writer = await _open(stack)
    head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: {auth}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()
    writer.write(head + payload[:10])  # then stall, well past body_timeout_s (1 s in tests)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 408"), raw[:200]
    assert b"application/problem+json" in raw and b"request_timeout" in raw and b"X-JWS-Signature" in raw
    assert (await last_entry(stack))["outcome"] == "request_timeout"
    await assert_still_serving(stack)


async def test_slow_header_sender_is_disconnected(stack: Stack) -> None:
    reader, writer = await _open(stack)
    writer.write(b"POST /v1/verifications HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    await writer.drain()
    closed = await asyncio.wait_for(reader.read(), timeout=15)  # idle_timeout_s is 2 s in tests
    writer.close()
    assert closed == b"", "the connection is closed without a request ever reaching a handler"
    await assert_still_serving(stack)


def test_catalogue_covers_every_code_used_here() -> None:
    from gateway.errors import catalogue

    for code in ("invalid_request", "unauthenticated", "headers_too_large", "request_timeout"):
        entry: dict[str, Any] = catalogue()[code]
        assert entry["type"].endswith(code)


async def test_body_split_across_packets_is_read_whole(stack: Stack) -> None:
    """A regression: a body that arrives in pieces must be read whole, not cut at the first piece."""
    idcs = stack.population.fixture("amo_tadamon").father.idcs
    payload = body(idcs=f'"{idcs}"')
    auth = bearer(stack, payload)["Authorization"]
    reader, writer = await _open(stack)
    writer.write((f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: {auth}\r\n"
                  f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload[:20])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(payload[20:])
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]


async def test_the_server_header_names_no_versions(stack: Stack) -> None:
    """``Server`` says what answers, never which Python or aiohttp version (a gift to a scanner)."""
    for method, path in (("GET", "/healthz"), ("DELETE", "/healthz"), ("GET", "/no/such/page")):
        async with stack.client.session.request(method, stack.gateway.url + path) as resp:
            await resp.read()
            assert resp.headers.get("Server") == "anss-gateway", (method, path, resp.headers.get("Server"))


MARK = "7153094029-SECRET"  # what a sender put in the bytes the parser refuses: it must never come back
UNPARSABLE = {
    "nul_in_method": f"G\x00T /{MARK} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "control_char_in_header": f"GET / HTTP/1.1\r\nHost: x\r\nX-Idcs: {MARK}\x01\r\n\r\n".encode(),
    "space_in_header_name": f"GET / HTTP/1.1\r\nHost: x\r\nX Idcs: {MARK}\r\n\r\n".encode(),
    "control_char_in_path": f"GET /{MARK}\x7f HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "header_line_too_long": f"GET / HTTP/1.1\r\nHost: x\r\nX-Idcs: {MARK}{'a' * 70_000}\r\n\r\n".encode(),
    "tls_on_the_plain_port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARK.encode(),
}


async def _unparsable_count(stack: Stack) -> int:
    async with stack.client.session.get(stack.gateway.url + "/readyz") as resp:
        count = (await resp.json())["unparsable_requests"]
        assert isinstance(count, int)
        return count


@pytest.mark.parametrize("name", sorted(UNPARSABLE))
async def test_parser_refusals_quote_nothing_back_and_are_counted(stack: Stack, name: str) -> None:
    """aiohttp's own 400 quoted the offending bytes (header values included) and named its version; ours says
    only that the request could not be parsed, names no version, and is counted in /readyz."""
    before = await _unparsable_count(stack)
    reader, writer = await _open(stack)
    writer.write(UNPARSABLE[name])
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=10)  # the connection is closed after the answer
    writer.close()
    head, _, answer = raw.partition(b"\r\n\r\n")
    status, code, detail = ((431, "headers_too_large", "a request header is too large")  # as any header too large
                            if name == "header_line_too_long" else
                            (400, "invalid_request", "the HTTP request could not be parsed"))
    assert head.startswith(b"HTTP/1.") and f" {status} ".encode() in head.split(b"\r\n")[0], raw[:300]
    assert MARK.encode() not in raw and b"aiohttp" not in raw and b"Python" not in raw, raw
    assert b"\r\nServer: anss-gateway" in head and b"application/problem+json" in head
    doc = orjson.loads(answer)
    assert (doc["status"], doc["code"]) == (status, code)
    assert doc["detail"] == detail
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert headers["X-Request-Id"] == doc["request_id"]
    async with stack.client.session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
        gateway_keys = {k["kid"]: public_from_jwk(k) for k in (await resp.json(content_type=None))["keys"]}
    signed = verify_detached(headers["X-JWS-Signature"], answer, gateway_keys)  # signed like any answer
    assert (signed["request_id"], signed["request_sha256"]) == (doc["request_id"], request_digest("", b""))
    assert await _unparsable_count(stack) == before + 1
    async with stack.client.session.get(stack.gateway.url + "/metrics") as resp:
        metrics = await resp.text()
    assert f'anss_gateway_unparsable_requests_total{{status="{status}"}} ' in metrics
    await assert_still_serving(stack)


async def test_parser_refusals_are_logged_without_bytes_at_most_once_a_minute() -> None:
    import structlog
    from structlog.testing import capture_logs

    from gateway.web import protocol
    from gateway.web.protocol import ParserRefusals

    refusals = ParserRefusals()
    configured = structlog.is_configured()
    with capture_logs() as logs, pytest.MonkeyPatch.context() as patch:
        patch.setattr(protocol, "log", structlog.get_logger(protocol.__name__))
        for _ in range(1_000):  # a flood of garbage: one line, not a thousand
            refusals.count(400, "BadHttpMethod")
    if not configured:
        structlog.reset_defaults()
    assert logs == [{"event": "http_request_unparsable", "log_level": "warning", "status": 400,
                     "error": "BadHttpMethod", "count": 1, "total": 1}]
    assert refusals.total == 1_000 and refusals.by_status == {400: 1_000}
