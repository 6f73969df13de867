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
