"""A citizen's token is verified strictly against the identity provider's JWKS on disk: every defect is a
401 ``citizen_token_invalid`` (the endpoint tests send the same tokens over HTTP)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.citizen.jwks import JwksError, JwksFile, parse_jwks
from gateway.citizen.token import Citizen, CitizenTokenInvalid, CitizenTokenVerifier
from gateway.config.settings import CITIZEN_ALGORITHMS, CitizenSettings
from gateway.errors import problem_body
from tests.citizen.idp import AUDIENCE, ISSUER, IdentityProvider

IDCS, CIN = "1234567890", "AB12345"


@pytest.fixture
def idp(tmp_path: Path) -> IdentityProvider:
    return IdentityProvider.create(tmp_path)


def verifier_for(idp: IdentityProvider, **changes: object) -> CitizenTokenVerifier:
    config = CitizenSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=idp.jwks_file, clock_leeway_s=30,
                             max_token_lifetime_s=3600)
    config = CitizenSettings(**{**config.__dict__, **changes})
    keys = JwksFile(idp.jwks_file, config.algorithms, recheck_s=0.0)
    keys.load()
    return CitizenTokenVerifier(config, keys)


async def verify(verifier: CitizenTokenVerifier, token: str) -> Citizen:
    return await verifier.verify([f"Bearer {token}"])


@pytest.mark.parametrize("kid", ["ed-1", "ec-1", "rsa-1"])
async def test_a_valid_token_of_each_algorithm_names_the_citizen(idp: IdentityProvider, kid: str) -> None:
    citizen = await verify(verifier_for(idp), idp.token(IDCS, CIN, kid=kid))
    assert (citizen.idcs, citizen.cin) == (IDCS, CIN)
    assert IDCS not in repr(citizen) and CIN not in repr(citizen)


async def test_the_cin_claim_is_optional_and_an_audience_list_may_hold_ours(idp: IdentityProvider) -> None:
    verifier = verifier_for(idp)
    assert await verify(verifier, idp.token(IDCS)) == Citizen(IDCS, None)
    assert (await verify(verifier, idp.token(IDCS, aud=[AUDIENCE, "portal"]))).idcs == IDCS
    assert await verify(verifier_for(idp, cin_claim=None), idp.token(IDCS, CIN)) == Citizen(IDCS, None)


async def test_the_claim_names_are_configurable(idp: IdentityProvider) -> None:
    token = idp.token(IDCS, idcs=None, national_id=IDCS)
    assert (await verify(verifier_for(idp, idcs_claim="national_id"), token)).idcs == IDCS
    with pytest.raises(CitizenTokenInvalid, match="lacks the `idcs` claim"):
        await verify(verifier_for(idp), token)


def _defects(idp: IdentityProvider, tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (token, what the refusal says)."""
    now = int(time.time())
    (tmp_path / "stranger").mkdir()
    stranger = IdentityProvider.create(tmp_path / "stranger")  # same kids, other keys
    good = idp.token(IDCS)
    head, payload, signature = good.split(".")
    return {
        "bad signature": (stranger.token(IDCS, kid="ed-1"), "signature does not verify"),
        "tampered payload": (f"{head}.{idp.token('9999999999').split('.')[1]}.{signature}",
                             "signature does not verify"),
        "unknown kid": (idp.token(IDCS, headers={"kid": "ed-2"}), "kid names no key"),
        "no kid": (jwt.encode(idp.claims(IDCS), idp.keys["ed-1"][1], algorithm="EdDSA"), "kid names no key"),
        "wrong issuer": (idp.token(IDCS, iss="https://idp.example.org"), "another issuer"),
        "wrong audience": (idp.token(IDCS, aud="anss-gateway"), "another audience"),
        "audience list without ours": (idp.token(IDCS, aud=["portal", "anss-gateway"]), "another audience"),
        "expired": (idp.token(IDCS, iat=now - 900, nbf=now - 900, exp=now - 600), "has expired"),
        "expired beyond the leeway": (idp.token(IDCS, iat=now - 300, nbf=None, exp=now - 35), "has expired"),
        "not yet valid (nbf)": (idp.token(IDCS, nbf=now + 600, exp=now + 900), "not valid yet"),
        "issued in the future (iat)": (idp.token(IDCS, iat=now + 600, nbf=None, exp=now + 900), "not valid yet"),
        "alg none": (idp.unsigned(IDCS), "not a compact JWS"),
        "alg none with a signature": (idp.unsigned(IDCS, signature=signature), "must be signed with one of"),
        "alg HS256 keyed with the public key": (idp.hs256_with_public_key(IDCS), "must be signed with one of"),
        "alg of another key": (jwt.encode(idp.claims(IDCS), idp.keys["ec-1"][1], algorithm="ES256",
                                          headers={"kid": "ed-1"}), "not the one of its key"),
        "missing idcs": (idp.token(IDCS, idcs=None), "lacks the `idcs` claim"),
        "missing exp": (idp.token(IDCS, exp=None), "lacks the `exp` claim"),
        "missing iat": (idp.token(IDCS, iat=None), "lacks the `iat` claim"),
        "missing sub": (idp.token(IDCS, sub=None), "lacks the `sub` claim"),
        "missing iss": (idp.token(IDCS, iss=None), "lacks the `iss` claim"),
        "missing aud": (idp.token(IDCS, aud=None), "lacks the `aud` claim"),
        "idcs not 10 digits": (idp.token("12345"), "must be an IDCS"),
        "idcs as a number": (idp.token(IDCS, idcs=1234567890), "must be an IDCS"),
        "malformed cin": (idp.token(IDCS, "ab-12"), "must be a CIN"),
        "exp as a string": (idp.token(IDCS, exp=str(now + 60)), "NumericDate"),
        "empty sub": (idp.token(IDCS, sub=""), "`sub` must be a non-empty string"),
        "too long a lifetime": (idp.token(IDCS, exp=now + 7200), "may live at most 3600 s"),
        "crit header": (idp.token(IDCS, headers={"crit": ["exp"]}), "critical header"),
        "malformed: two segments": (f"{head}.{payload}", "not a compact JWS"),
        "malformed: not base64url": (f"{head}.{payload}.{signature}!", "not a compact JWS"),
        "malformed: header not JSON": (f"bm90IGpzb24.{payload}.{signature}", "header is not JSON"),
        "malformed: header a list": (f"WzFd.{payload}.{signature}", "not a JSON object"),
        "malformed: payload not JSON": (idp.signed_payload(b"not json"), "claims are not JSON"),
        "malformed: payload a list": (idp.signed_payload(b"[1, 2]"), "claims are not a JSON object"),
        "sub as a number": (idp.token(IDCS, sub=5), "`sub` must be a non-empty string"),
        "exp as true": (idp.token(IDCS, exp=True), "`exp` must be a NumericDate"),
        "nbf as null": (idp.signed_payload(orjson.dumps({**idp.claims(IDCS), "nbf": None})), "`nbf` must be"),
        "cin as null": (idp.signed_payload(orjson.dumps({**idp.claims(IDCS), "cin": None})), "must be a CIN"),
        "malformed: too long": ("a" * 9000 + ".b.c", "not a compact JWS"),
    }


async def test_every_defect_is_refused_with_citizen_token_invalid(idp: IdentityProvider, tmp_path: Path) -> None:
    verifier = verifier_for(idp)
    defects = _defects(idp, tmp_path)
    for name, (token, says) in defects.items():
        with pytest.raises(CitizenTokenInvalid) as info:
            await verify(verifier, token)
        error = info.value
        assert (error.status, error.code) == (401, "citizen_token_invalid"), name
        assert says in error.detail, f"{name}: {error.detail}"
        assert error.headers["WWW-Authenticate"].startswith("Bearer "), name
        assert IDCS not in error.detail and IDCS not in problem_body(error, "r").decode(), name
    assert len(defects) >= 30


@pytest.mark.parametrize(("authorization", "challenge_error"), [
    ([], False), (["Basic dXNlcjpwYXNz"], True), (["Bearer"], True), (["Bearer a.b.c", "Bearer a.b.c"], True),
])
async def test_the_authorization_header_itself(idp: IdentityProvider, authorization: list[str],
                                               challenge_error: bool) -> None:
    with pytest.raises(CitizenTokenInvalid) as info:
        await verifier_for(idp).verify(authorization)
    assert ('error="invalid_token"' in info.value.headers["WWW-Authenticate"]) is challenge_error


async def test_an_algorithm_left_out_of_the_configuration_is_refused(idp: IdentityProvider) -> None:
    verifier = verifier_for(idp, algorithms=("EdDSA",))
    assert (await verify(verifier, idp.token(IDCS))).idcs == IDCS
    for kid in ("ec-1", "rsa-1"):
        with pytest.raises(CitizenTokenInvalid, match="must be signed with one of"):
            await verify(verifier, idp.token(IDCS, kid=kid))


async def test_a_rotated_jwks_file_is_followed(idp: IdentityProvider) -> None:
    verifier = verifier_for(idp)
    idp.add_key("ed-2", "EdDSA", ed25519.Ed25519PrivateKey.generate())
    assert (await verify(verifier, idp.token(IDCS, kid="ed-2"))).idcs == IDCS
    del idp.keys["ed-1"]
    idp.publish()
    with pytest.raises(CitizenTokenInvalid, match="kid names no key"):
        await verify(verifier, idp.token(IDCS, kid="ed-2", headers={"kid": "ed-1"}))
    idp.jwks_file.write_text("{ broken", encoding="utf-8")  # a broken replacement: the keys read before stay
    assert (await verify(verifier, idp.token(IDCS, kid="ed-2"))).idcs == IDCS


def _jwk(private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, alg: str,
         **extra: object) -> dict[str, object]:
    public = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
    return {**public, "kid": "k", **extra}


@pytest.mark.parametrize(("document", "message"), [
    ({"nokeys": []}, "not a JWKS"),
    ({"keys": ["x"]}, "not a JSON object"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}, "private or secret key material"),
    ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}, "has no `kid`"),
    ({"keys": []}, "no usable signature key"),
])
def test_unusable_jwks_documents(document: object, message: str) -> None:
    with pytest.raises(JwksError, match=message):
        parse_jwks(document, CITIZEN_ALGORITHMS)


def test_jwks_keys_are_bound_to_one_algorithm_and_non_signature_keys_skipped() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    private_jwk = json.loads(jwt.algorithms.get_default_algorithms()["EdDSA"].to_jwk(ed, as_dict=False))
    with pytest.raises(JwksError, match="private"):
        parse_jwks({"keys": [{**private_jwk, "kid": "p"}]}, CITIZEN_ALGORITHMS)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(JwksError, match="at least 2048 bits"):
        parse_jwks({"keys": [_jwk(small, "RS256")]}, CITIZEN_ALGORITHMS)
    with pytest.raises(JwksError, match="appears twice"):
        parse_jwks({"keys": [_jwk(ed, "EdDSA"), _jwk(ed, "EdDSA")]}, CITIZEN_ALGORITHMS)
    keys = parse_jwks({"keys": [
        _jwk(ed, "EdDSA"),
        {**_jwk(ed, "EdDSA"), "kid": "enc", "use": "enc"},
        {**_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"), "kid": "ps",
         "alg": "PS256"},
    ]}, CITIZEN_ALGORITHMS)
    assert {kid: key.algorithm_name for kid, key in keys.items()} == {"k": "EdDSA"}
    with pytest.raises(JwksError, match="no usable"):
        parse_jwks({"keys": [_jwk(ed, "EdDSA")]}, ("RS256",))


def test_refusal_factory_is_sound(idp: IdentityProvider) -> None:
    """The helper that forges tokens really produces what each name says (else the tests above prove less)."""
    header = jwt.get_unverified_header(idp.unsigned(IDCS))
    assert header["alg"] == "none"
    header = jwt.get_unverified_header(idp.hs256_with_public_key(IDCS))
    assert header["alg"] == "HS256"
    assert "idcs" not in jwt.decode(idp.token(IDCS, idcs=None), options={"verify_signature": False})


async def test_the_clock_leeway_applies(idp: IdentityProvider) -> None:
    now = int(time.time())
    verifier = verifier_for(idp)  # 30 s of leeway
    assert (await verify(verifier, idp.token(IDCS, iat=now - 300, nbf=None, exp=now - 20))).idcs == IDCS
    assert (await verify(verifier, idp.token(IDCS, iat=now + 20, nbf=now + 20, exp=now + 300))).idcs == IDCS
