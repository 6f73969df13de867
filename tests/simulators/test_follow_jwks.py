"""The administrations follow the gateway's JWKS: ``keys rotate`` needs no restart anywhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.cli.main import main
from gateway.crypto import keys
from gateway.web.state import RUNTIME
from simulators.gateway_keys import GatewayKeys
from tests.gateway.conftest import build_stack


async def test_a_rotated_signing_key_keeps_every_source_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with build_stack(tmp_path) as stack:
        stack.simulators.follow_jwks(f"{stack.gateway.url}/.well-known/jwks.json")
        runtime = stack.gateway.runner.app[RUNTIME]
        before = runtime.signing_key.kid
        idcs = stack.population.fixture("amo_tadamon").father.idcs
        assert (await stack.client.verify({"idcs": idcs}, "asd.eligibility", "CASE-ROT-1")).status == 200

        monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(stack.settings.state_dir))
        assert await asyncio.to_thread(main, ["keys", "rotate"]) == 0
        for _ in range(50):  # the gateway picks the new key up within about a second
            if runtime.signing_key.kid != before:
                break
            await asyncio.sleep(0.1)
        assert runtime.signing_key.kid != before
        assert runtime.signing_key.kid not in stack.simulators.gateway_keys.known

        answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", "CASE-ROT-2")
        assert answer.status == 200
        assert answer.signature_header is not None, "the client fetched the JWKS again for the new kid"
        document = answer.json()
        assert {s["status"] for s in document["sources"]} == {"ok"}, document["sources"]
        assert all(c["status"] == "verified" for c in document["checks"].values())
        assert runtime.signing_key.kid in stack.simulators.gateway_keys.known
        assert stack.simulators.gateway_keys.fetches == 1  # one fetch for all the simulators


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval() -> None:
    now = [0.0]
    cache = GatewayKeys({}, min_refresh_s=5.0, clock=lambda: now[0])
    cache.follow("http://127.0.0.1:9/.well-known/jwks.json")  # nothing listens: every fetch fails
    for kid in ("a", "b", "c"):
        assert await cache.key(kid) is None
    assert cache._last_try == 0.0
    now[0] = 5.0
    assert await cache.key("d") is None and cache._last_try == 5.0


async def test_without_a_jwks_the_seed_keys_are_used() -> None:
    key = keys.generate()
    cache = GatewayKeys({key.kid: key.public})
    assert await cache.key(key.kid) == key.public and await cache.key("other") is None and cache.fetches == 0


class Jwks:
    """A stand-in for the gateway's JWKS endpoint: what it publishes, its Cache-Control, and a stall switch."""

    def __init__(self, published: list[keys.SigningKey], max_age: int = 300) -> None:
        self.published, self.max_age, self.stall_s, self.hits = published, max_age, 0.0, 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.sleep(self.stall_s)
        return web.json_response(keys.jwks(self.published), headers={"Cache-Control": f"max-age={self.max_age}"})


async def _serving(jwks: Jwks) -> TestServer:
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_the_seed_ages_and_the_jwks_max_age_is_followed() -> None:
    """A key the gateway retired before the administration ever fetched its JWKS drops out once the seed is
    older than max-age; after a fetch, the answer's own max-age is the next refresh's."""
    old, new = keys.generate(), keys.generate()
    jwks = Jwks([new], max_age=5)
    server = await _serving(jwks)
    now = [0.0]
    cache = GatewayKeys({old.kid: old.public, new.kid: new.public}, clock=lambda: now[0])
    cache.follow(str(server.make_url("/.well-known/jwks.json")))
    try:
        assert await cache.key(old.kid) == old.public and jwks.hits == 0, "fresh seed: no fetch"
        now[0] = 301.0
        assert await cache.key(old.kid) == old.public, "stale: answered from the cache, refreshed beside the call"
        await asyncio.sleep(0.2)
        assert jwks.hits == 1 and await cache.key(old.kid) is None and cache.max_age_s == 5.0
        jwks.published = [new, old]
        now[0] = 306.0
        await cache.key(new.kid)
        await asyncio.sleep(0.2)
        assert jwks.hits == 2, "refreshed after the answer's max-age of 5 s"
    finally:
        await server.close()


async def test_a_stalled_jwks_delays_no_call_whose_key_is_held() -> None:
    key = keys.generate()
    jwks = Jwks([key])
    jwks.stall_s = 1.5
    server = await _serving(jwks)
    now = [0.0]
    cache = GatewayKeys({key.kid: key.public}, clock=lambda: now[0])
    cache.follow(str(server.make_url("/.well-known/jwks.json")))
    try:
        now[0] = 400.0  # stale
        loop = asyncio.get_running_loop()
        began = loop.time()
        found = await asyncio.gather(*(cache.key(key.kid) for _ in range(20)))
        assert all(k == key.public for k in found) and loop.time() - began < 0.5
        await asyncio.sleep(1.7)
        assert jwks.hits == 1, "one refresh beside the calls, not one per call"
    finally:
        await server.close()


def test_the_reference_verifier_refuses_what_the_docs_say_to_refuse() -> None:
    """docs/security.md, "Verifying the gateway's calls": the key's own alg, iss, one aud, a jti used once."""
    import hashlib
    import time as clock

    import jwt as pyjwt

    from gateway.crypto.keys import b64url
    from gateway.crypto.outbound import OutboundAuthError, SeenTokens, verify_outbound

    key = keys.generate()
    trusted = {key.kid: key.public}
    now = int(clock.time())

    def token(alg: str = "EdDSA", **over: object) -> str:
        claims = {"iss": "anss-gateway", "aud": "men.massar", "iat": now, "exp": now + 60, "jti": "j-1",
                  "htm": "GET", "htu": "/p", "body_sha256": b64url(hashlib.sha256(b"").digest()), **over}
        signed = pyjwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})
        if alg != "EdDSA":  # the header rewritten to another alg, the signature kept: a forgery
            head, rest = signed.split(".", 1)
            head = b64url(orjson.dumps({"alg": alg, "kid": key.kid, "typ": "JWT"}))
            signed = f"{head}.{rest}"
        return "Bearer " + signed

    def check(authorization: str, seen: SeenTokens | None = None) -> None:
        verify_outbound(authorization, "GET", "/p", b"", "men.massar", trusted, issuer="anss-gateway", seen=seen)

    check(token())
    for bad in (token(alg="ES256"), token(iss="someone-else"), token(aud=["men.massar", "cnss.amo"]), token(jti="")):
        with pytest.raises(OutboundAuthError):
            check(bad)
    seen = SeenTokens()
    check(token(jti="once"), seen)
    with pytest.raises(OutboundAuthError, match="replay"):
        check(token(jti="once"), seen)
