"""The code in docs/security.md works as printed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.client import client_assertion
from tests.gateway.conftest import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def snippet(section: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    part = text[text.index(section):]
    match = re.search(r"```python\n(.*?)```", part, re.S)
    assert match, f"no python block after {section!r}"
    return match.group(1)


async def test_documented_answer_verification_works(stack: Stack) -> None:
    namespace: dict[str, Any] = {}
    exec(snippet("## 2."), namespace)  # the published ~15 lines, as printed
    verify_answer = namespace["verify_answer"]
    assert len(snippet("## 2.").strip().splitlines()) <= 20

    body = orjson.dumps({"subject": {"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                         "purpose": "asd.eligibility", "case_ref": "DOC-1", "checks": ["identity"]})
    token = client_assertion(stack.client.key, "anss.asd", "anss-gateway", "POST", "/v1/verifications", body,
                             jti="doc-jti-1")
    async with aiohttp.ClientSession() as session:
        async with session.get(stack.gateway.url + "/.well-known/jwks.json") as resp:
            jwks = await resp.json(content_type=None)
        async with session.post(stack.gateway.url + "/v1/verifications", data=body,
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "application/json"}) as resp:
            answer, signature = await resp.read(), resp.headers["X-JWS-Signature"]
    document = verify_answer(jwks, signature, answer, "doc-jti-1", body)
    assert document["checks"]["identity"]["status"] == "verified"
    with pytest.raises(ValueError, match="another question"):
        verify_answer(jwks, signature, answer, "doc-jti-2", body)


def test_documented_request_signing_matches_the_contract(stack: Stack) -> None:
    import jwt

    namespace: dict[str, Any] = {"private_key": stack.client.key.private, "my_kid": stack.client.key.kid}
    exec(snippet("## 1."), namespace)
    claims = jwt.decode(namespace["token"], stack.client.key.public, algorithms=["EdDSA"], audience="anss-gateway")
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti", "htm", "htu", "body_sha256"}


def test_catalogue_table_lists_every_code() -> None:
    from gateway.errors import catalogue

    text = DOC.read_text(encoding="utf-8")
    for code in catalogue():
        assert f"| `{code}` |" in text, code
