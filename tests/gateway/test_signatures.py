"""Response signatures verify with an independent JOSE implementation (joserfc), given only the JWKS."""

from __future__ import annotations

import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter

from tests.gateway.conftest import Stack

# RFC 7515 §4.3 private header parameters the gateway uses; joserfc refuses unregistered ones by default.
# joserfc also wants the (non-default) EdDSA algorithm named explicitly.
REGISTRY = JWSRegistry(
    header_registry={
        "iat": HeaderParameter("Issued at", "int"),
        "request_id": HeaderParameter("Gateway request id", "str"),
        "request_sha256": HeaderParameter("Digest of the question (jti + body)", "str"),
    },
    algorithms=["EdDSA", "ES256"],
)



async def test_response_signature_verifies_with_joserfc_and_published_jwks(stack: Stack) -> None:
    async with stack.client.session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
        jwks = await resp.json(content_type=None)
    key_set = KeySet.import_key_set(jwks)

    answer = await stack.client.verify({"idcs": stack.population.fixture("disabled_child").father.idcs},
                                       "asd.eligibility", "CASE-SIG")
    token = answer.headers["X-JWS-Signature"]
    assert token.count(".") == 2 and token.split(".")[1] == "", "detached payload"
    verified = jws.deserialize_compact(token, key_set, algorithms=["EdDSA"], registry=REGISTRY,
                                       payload=answer.body)
    header = verified.protected
    assert header["alg"] == "EdDSA" and header["kid"] == jwks["keys"][0]["kid"]
    assert header["request_id"] == answer.json()["request_id"] and isinstance(header["iat"], int)

    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(token, key_set, algorithms=["EdDSA"], registry=REGISTRY,
                                payload=answer.body.replace(b"true", b"fals"))


async def test_error_responses_are_signed_too(stack: Stack) -> None:
    async with stack.client.session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
        key_set = KeySet.import_key_set(await resp.json(content_type=None))
    async with stack.client.session.post(stack.gateway.url + "/v1/verifications", data=b"{}") as resp:
        body = await resp.read()
        token = resp.headers["X-JWS-Signature"]
    assert resp.status == 401
    jws.deserialize_compact(token, key_set, algorithms=["EdDSA"], registry=REGISTRY, payload=body)


async def test_signature_binds_the_answer_to_its_question(stack: Stack) -> None:
    import hashlib

    import aiohttp

    from gateway.client import client_assertion
    from gateway.crypto import keys
    from gateway.crypto.jws import verify_detached

    jwks_keys = {k["kid"]: keys.public_from_jwk(k) for k in (await _jwks(stack))["keys"]}
    body = (b'{"subject":{"idcs":"' + stack.population.fixture("amo_tadamon").father.idcs.encode()
            + b'"},"purpose":"asd.eligibility","case_ref":"BIND-1","checks":["identity"]}')
    token = client_assertion(stack.client.key, "anss.asd", "anss-gateway", "POST", "/v1/verifications", body,
                             jti="jti-bind-1")
    async with aiohttp.ClientSession() as session, session.post(
        stack.gateway.url + "/v1/verifications", data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as resp:
        answer, signature = await resp.read(), resp.headers["X-JWS-Signature"]
    header = verify_detached(signature, answer, jwks_keys)
    expected = keys.b64url(hashlib.sha256(b"jti-bind-1\n" + body).digest())
    assert header["request_sha256"] == expected
    other_question = keys.b64url(hashlib.sha256(b"jti-bind-2\n" + body).digest())
    assert header["request_sha256"] != other_question, "the same answer cannot pass for another question"


async def _jwks(stack: Stack) -> dict[str, list[dict[str, str]]]:
    async with stack.client.session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
        document: dict[str, list[dict[str, str]]] = await resp.json(content_type=None)
        return document


async def test_a_refused_request_is_bound_with_an_empty_jti(stack: Stack) -> None:
    """The rule in README and docs/security.md: refused before an assertion was accepted, jti is ''."""
    import hashlib

    from gateway.crypto import keys
    from gateway.crypto.jws import verify_detached

    jwks_keys = {k["kid"]: keys.public_from_jwk(k) for k in (await _jwks(stack))["keys"]}
    body = b'{"purpose":"asd.eligibility"}'
    for authorization in (None, "Bearer not.a.token"):
        headers = {"Content-Type": "application/json"} | ({"Authorization": authorization} if authorization else {})
        async with stack.client.session.post(stack.gateway.url + "/v1/verifications", data=body,
                                             headers=headers) as resp:
            answer, signature = await resp.read(), resp.headers["X-JWS-Signature"]
        assert resp.status == 401, answer
        header = verify_detached(signature, answer, jwks_keys)
        assert header["request_sha256"] == keys.b64url(hashlib.sha256(b"\n" + body).digest()), authorization


@pytest.mark.parametrize(("method", "path", "status"), [
    ("HEAD", "/healthz", 200), ("HEAD", "/.well-known/jwks.json", 200), ("HEAD", "/v1/verifications", 405)])
async def test_a_head_answer_is_signed_over_the_empty_body_it_carries(stack: Stack, method: str, path: str,
                                                                     status: int) -> None:
    """A HEAD answer has the GET's headers and no body: its signature covers what arrived, the empty body."""
    async with stack.client.session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
        key_set = KeySet.import_key_set(await resp.json(content_type=None))
    async with stack.client.session.request(method, stack.gateway.url + path) as resp:
        body = await resp.read()
        token = resp.headers["X-JWS-Signature"]
    assert (resp.status, body) == (status, b"")
    verified = jws.deserialize_compact(token, key_set, algorithms=["EdDSA"], registry=REGISTRY, payload=b"")
    assert verified.protected["request_id"] == resp.headers["X-Request-Id"]
    async with stack.client.session.get(stack.gateway.url + path) as resp:  # the GET's body is not what HEAD got
        got = await resp.read()
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(token, key_set, algorithms=["EdDSA"], registry=REGISTRY, payload=got)


async def test_the_bundled_client_accepts_a_refusal_bound_to_the_empty_question(stack: Stack) -> None:
    """A request refused before its assertion was accepted is answered with an empty jti (docs/security.md
    section 2): the client must take that answer as the answer to its question, not call it INVALID."""
    from gateway.crypto import keys

    own = stack.client.key
    stack.client.key = keys.generate()  # a key the gateway does not know: refused before any jti is accepted
    try:
        answer = await stack.client.verify({"idcs": "1234567890"}, "asd.eligibility", "CASE-STRANGER")
    finally:
        stack.client.key = own
    assert (answer.status, answer.json()["code"]) == (401, "invalid_assertion")
    assert answer.signature_header is not None, "signed, and bound to the question as a refusal binds it"
