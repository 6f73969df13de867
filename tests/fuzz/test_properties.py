"""Property tests (Hypothesis) for the three places hostile input meets the gateway first.

(a) request validation (``parse_json``): any body either parses to a document that follows the request schema
    or is refused with ``BadRequest``; identifiers are ASCII only (no Arabic-Indic or fullwidth digits).
(b) the detached response signature (``sign_detached`` / ``verify_detached``): it verifies for EdDSA and
    ES256, and any single altered body byte or token character makes it raise ``SignatureInvalid``.
(c) the client assertion (``authenticate``): any Authorization header is either a valid assertion or
    refused with ``Unauthenticated``; a valid assertion with one claim removed or changed is refused.

Bounded and derandomized so that CI runs are reproducible.
"""

from __future__ import annotations

import json
import math
import re
import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators

from gateway.api.validation import parse_json
from gateway.config.settings import Settings, load
from gateway.crypto import keys
from gateway.crypto.jws import SignatureInvalid, sign_detached, verify_detached
from gateway.crypto.keyring import ResolverChain, StaticClientKeys, dev_client_key_path
from gateway.crypto.keys import SigningKey, b64url, b64url_decode
from gateway.crypto.outbound import body_digest
from gateway.errors import BadRequest, Unauthenticated
from gateway.federation.checks.registry import builtin
from gateway.trust.assertion import authenticate

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
REQUEST_SCHEMA = "verification-request.json"
PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"

# ------------------------------------------------------------------------------------------- strategies

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# digits of other scripts (Arabic-Indic, Extended Arabic-Indic, fullwidth, N'Ko, Devanagari, mathematical),
# other numbers (superscripts, circled), look-alike letters (Greek, Cyrillic, fullwidth, Kelvin sign, ligature)
UNICODE_DIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹０１２３４５６７８９߀߁०१२𝟎𝟏𝟗"
OTHER_NUMBERS = "²³¹①"
LOOKALIKE_LETTERS = "ΑΒАВＡＢÀÉİKﬀ"
BLANKS = " \n\r\t\x00\u200b"
VALID_IDCS = st.from_regex(r"\A[0-9]{10}\Z")
VALID_CIN = st.from_regex(r"\A[A-Z]{1,2}[0-9]{5,6}\Z")


def substitute(valid: str, index: int, char: str) -> str:
    i = index % len(valid)
    return valid[:i] + char + valid[i + 1:]


IDCS_CANDIDATES = st.one_of(
    VALID_IDCS,
    st.builds(substitute, VALID_IDCS, st.integers(0, 9), st.sampled_from(UNICODE_DIGITS + OTHER_NUMBERS)),
    st.builds(lambda s, t: s + t, VALID_IDCS, st.sampled_from(["\n", "\r\n", " ", "\x00", "\u200b", "0"])),
    st.text(string.digits + UNICODE_DIGITS + OTHER_NUMBERS + BLANKS + "aZ+-.", min_size=8, max_size=12),
)
CIN_CANDIDATES = st.one_of(
    VALID_CIN,
    st.builds(substitute, VALID_CIN, st.integers(0, 7),
              st.sampled_from(UNICODE_DIGITS + LOOKALIKE_LETTERS + string.ascii_lowercase)),
    st.builds(lambda s, t: s + t, VALID_CIN, st.sampled_from(["\n", " ", "\x00", "A", "0"])),
    st.text(string.ascii_uppercase + string.digits + UNICODE_DIGITS + LOOKALIKE_LETTERS + BLANKS + "ab",
            min_size=5, max_size=9),
)
PURPOSES = st.one_of(st.sampled_from(["asd.eligibility", "amo.tadamon.eligibility"]),
                     st.from_regex(r"\A[a-z][a-z0-9_.-]{0,70}\Z"), st.text(max_size=10))
CASE_REFS = st.one_of(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,70}\Z"), st.text(max_size=10))
CHECK_NAMES = st.sampled_from(["identity", "household", "schooling", "health_coverage", "employment", "credit", ""])
SUBJECTS = st.one_of(
    st.builds(lambda v: {"idcs": v}, IDCS_CANDIDATES),
    st.builds(lambda v: {"cin": v}, CIN_CANDIDATES),
    st.dictionaries(st.sampled_from(["idcs", "cin", "name"]), st.one_of(VALID_IDCS, VALID_CIN, JSON_VALUES),
                    max_size=3),
    JSON_VALUES,
)
REQUEST_LIKE = st.builds(
    lambda required, optional: {**required, **optional},
    st.fixed_dictionaries({"subject": SUBJECTS, "purpose": PURPOSES, "case_ref": CASE_REFS}),
    st.fixed_dictionaries({}, optional={
        "checks": st.one_of(st.lists(CHECK_NAMES, max_size=7), JSON_VALUES),
        "extra": JSON_VALUES,
        "subject": JSON_VALUES,
    }),
)


# ----------------------------------------------------------------------------- (a) request validation


def _whole_string_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """The oracle: every pattern of the request schema is anchored (``^…$``); match the whole string."""
    if isinstance(instance, str):
        assert pattern.startswith("^") and pattern.endswith("$"), pattern
        if re.fullmatch(pattern[1:-1], instance) is None:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


ORACLE = validators.extend(Draft202012Validator, {"pattern": _whole_string_pattern})(  # type: ignore[no-untyped-call]
    json.loads((SCHEMAS / REQUEST_SCHEMA).read_text(encoding="utf-8")))
IDCS = re.compile(r"[0-9]{10}", re.ASCII)
CIN = re.compile(r"[A-Z]{1,2}[0-9]{5,6}", re.ASCII)


def outcome(body: bytes) -> dict[str, Any] | None:
    """The parsed document, or None when refused with BadRequest; any other exception fails the test."""
    try:
        document = parse_json(body, "application/json", REQUEST_SCHEMA, builtin())
    except BadRequest:
        return None
    assert isinstance(document, dict)
    assert ORACLE.is_valid(document), document
    return document


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@PROPERTIES
@given(REQUEST_LIKE)
def test_request_like_documents_are_accepted_iff_they_follow_the_schema(document: dict[str, Any]) -> None:
    parsed = outcome(dumps(document))
    assert (parsed is not None) == ORACLE.is_valid(document), document
    if parsed is not None:
        assert parsed == document


@PROPERTIES
@given(JSON_VALUES)
def test_arbitrary_json_is_parsed_or_refused(value: Any) -> None:
    for body in (dumps(value), json.dumps(value).encode()):  # raw UTF-8 and \u escapes (lone surrogates too)
        parsed = outcome(body)
        assert (parsed is not None) == ORACLE.is_valid(value)


VALID_BODY = b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"CASE-1"}'


@PROPERTIES
@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda i, junk: VALID_BODY[:i] + junk + VALID_BODY[i:], st.integers(0, len(VALID_BODY)),
              st.binary(min_size=1, max_size=4)),
    st.builds(lambda i: VALID_BODY[:i] + VALID_BODY[i + 1:], st.integers(0, len(VALID_BODY) - 1)),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 5000)),
    st.builds(lambda n: b"1" * n, st.integers(4000, 6000)),
))
@example(b"\xef\xbb\xbf" + VALID_BODY)  # UTF-8 byte order mark
@example(VALID_BODY.decode().encode("utf-16"))
@example(b'{"subject":{"idcs":"1234567890"},"purpose":"asd.eligibility","case_ref":"A","case_ref":"B"}')
def test_arbitrary_bytes_are_parsed_or_refused(body: bytes) -> None:
    parsed = outcome(body)
    if parsed is not None:
        assert parsed == json.loads(body)


@PROPERTIES
@given(VALID_IDCS, st.sampled_from(["subject", "purpose", "case_ref"]))
def test_duplicate_keys_are_refused(idcs: str, duplicated: str) -> None:
    members = {"subject": f'{{"idcs":"{idcs}"}}', "purpose": '"asd.eligibility"', "case_ref": '"CASE-1"'}
    body = "{" + ",".join(f'"{k}":{v}' for k, v in members.items()) + f',"{duplicated}":{members[duplicated]}}}'
    assert outcome(body.encode()) is None


@PROPERTIES
@given(IDCS_CANDIDATES)
@example("١٢٣٤٥٦٧٨٩٠")  # Arabic-Indic digits
@example("۱۲۳۴۵۶۷۸۹۰")  # Extended Arabic-Indic (Persian) digits
@example("１２３４５６７８９０")  # fullwidth digits
@example("1234567890\n")  # Python's `$` matches before a final newline; JSON Schema's does not
@example("1234567890")
def test_idcs_is_accepted_iff_ten_ascii_digits(idcs: str) -> None:
    parsed = outcome(dumps({"subject": {"idcs": idcs}, "purpose": "asd.eligibility", "case_ref": "CASE-1"}))
    assert (parsed is not None) == (IDCS.fullmatch(idcs) is not None), repr(idcs)
    if parsed is not None:
        assert parsed["subject"] == {"idcs": idcs}


@PROPERTIES
@given(CIN_CANDIDATES)
@example("AB١٢٣٤٥٦")
@example("ＡＢ123456")
@example("ΑΒ123456")  # Greek capitals
@example("AB123456\n")
@example("AB123456")
def test_cin_is_accepted_iff_one_or_two_ascii_capitals_and_five_or_six_ascii_digits(cin: str) -> None:
    parsed = outcome(dumps({"subject": {"cin": cin}, "purpose": "asd.eligibility", "case_ref": "CASE-1"}))
    assert (parsed is not None) == (CIN.fullmatch(cin) is not None), repr(cin)
    if parsed is not None:
        assert parsed["subject"] == {"cin": cin}


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_schema_patterns_use_no_unicode_sensitive_classes() -> None:
    r"""Python's ``re`` reads ``\d``, ``\w``, ``\s`` and ``\b`` as Unicode classes (``\d`` matches '١' and
    '１'); ECMA-262, the dialect of JSON Schema, reads them as ASCII. Explicit ranges mean the same in both."""
    found = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        for pattern in _patterns(json.loads(path.read_text(encoding="utf-8"))):
            found.append(pattern)
            assert not re.search(r"\\[dDwWsSbB]", pattern), f"{path.name}: {pattern}"
    assert found


# ------------------------------------------------------------------------------ (b) response signatures

SIGNING_KEYS = {
    "EdDSA": SigningKey.from_private(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))),
    "ES256": SigningKey.from_private(ec.derive_private_key(0x5EED_2026_0A55, ec.SECP256R1())),
}
ALGS = st.sampled_from(sorted(SIGNING_KEYS))
REQUEST_IDS = st.one_of(st.from_regex(r"\A[0-9a-f]{32}\Z"), st.text(max_size=40))
# how one character of a token is altered: replaced by any character, by another base64url letter (its
# 6-bit value XOR n), or by its standard-base64 spelling ('-' → '+', '_' → '/')
EDITS = st.one_of(
    st.tuples(st.just("char"), st.characters()),
    st.tuples(st.just("xor"), st.integers(1, 63)),
    st.tuples(st.just("alias"), st.none()),
)
POSITIONS = st.one_of(st.just(-1), st.integers(min_value=0))  # -1: the last character of the region


def published(alg: str) -> dict[str, keys.PublicKey]:
    key = SIGNING_KEYS[alg]
    return {key.kid: key.public}


def edited(char: str, edit: tuple[str, Any]) -> str:
    kind, argument = edit
    if kind == "char":
        return str(argument)
    if kind == "xor":
        return B64URL[B64URL.index(char) ^ argument] if char in B64URL else chr(ord(char) ^ argument)
    return {"-": "+", "_": "/"}.get(char, char.swapcase())


def edit_token(token: str, start: int, end: int, position: int, edit: tuple[str, Any]) -> str:
    index = start + (position % (end - start))
    new = edited(token[index], edit)
    assume(new != token[index])
    return token[:index] + new + token[index + 1:]


@PROPERTIES
@given(ALGS, st.binary(max_size=2000), REQUEST_IDS)
def test_signature_verifies(alg: str, body: bytes, request_id: str) -> None:
    key = SIGNING_KEYS[alg]
    header = verify_detached(sign_detached(key, body, request_id), body, published(alg))
    assert (header["alg"], header["kid"], header["request_id"]) == (alg, key.kid, request_id)


@PROPERTIES
@given(ALGS, st.binary(min_size=1, max_size=2000), st.integers(min_value=0), st.integers(1, 255))
def test_any_altered_body_byte_is_refused(alg: str, body: bytes, position: int, mask: int) -> None:
    token = sign_detached(SIGNING_KEYS[alg], body, "0" * 32)
    index = position % len(body)
    altered = body[:index] + bytes([body[index] ^ mask]) + body[index + 1:]
    with pytest.raises(SignatureInvalid):
        verify_detached(token, altered, published(alg))


@PROPERTIES
@given(ALGS, st.binary(max_size=200), POSITIONS, EDITS)
def test_any_altered_character_of_the_protected_header_is_refused(alg: str, body: bytes, position: int,
                                                                  edit: tuple[str, Any]) -> None:
    token = sign_detached(SIGNING_KEYS[alg], body, "0" * 32)
    altered = edit_token(token, 0, token.index("..") + 2, position, edit)  # the protected header and both dots
    with pytest.raises(SignatureInvalid):
        verify_detached(altered, body, published(alg))


@PROPERTIES
@given(ALGS, st.binary(max_size=200), POSITIONS, EDITS)
@example(alg="EdDSA", body=b"{}", position=-1, edit=("xor", 1))
@example(alg="ES256", body=b"{}", position=-1, edit=("xor", 1))
def test_any_altered_character_of_the_signature_is_refused(alg: str, body: bytes, position: int,
                                                          edit: tuple[str, Any]) -> None:
    token = sign_detached(SIGNING_KEYS[alg], body, "0" * 32)
    altered = edit_token(token, token.index("..") + 2, len(token), position, edit)
    with pytest.raises(SignatureInvalid):
        verify_detached(altered, body, published(alg))


# ------------------------------------------------------------------------------ (c) client assertions

CLIENT = "anss.asd"
PATH = "/v1/verifications"
BODY = VALID_BODY
CLAIMS = ("iss", "sub", "aud", "iat", "exp", "jti", "htm", "htu", "body_sha256")
# extra keys registered for the client besides its dev key: fixed, so that strategies can name their kids
EXTRA_KEYS = {
    "EdDSA": SigningKey.from_private(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))),
    "ES256": SigningKey.from_private(ec.derive_private_key(0xC11E_47_2026, ec.SECP256R1())),
}
KIDS = st.sampled_from([k.kid for k in EXTRA_KEYS.values()] + ["", "unknown", "../../etc/passwd"])


@dataclass(frozen=True)
class AuthEnv:
    settings: Settings
    resolver: ResolverChain
    dev_key: SigningKey

    def authenticate(self, authorization: str | None, body: bytes = BODY) -> Any:
        return authenticate(authorization, "POST", PATH, body, self.settings.gateway_id, self.settings.clients,
                            self.resolver, self.settings.clock_leeway_s)

    def claims(self, now: int | None = None) -> dict[str, Any]:
        issued = int(time.time()) if now is None else now
        return {"iss": CLIENT, "sub": CLIENT, "aud": self.settings.gateway_id, "iat": issued, "exp": issued + 60,
                "jti": uuid.uuid4().hex, "htm": "POST", "htu": PATH, "body_sha256": body_digest(BODY)}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> AuthEnv:
    settings = load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path_factory.mktemp("auth") / "state")})
    extra = StaticClientKeys({CLIENT: {k.kid: k.public for k in EXTRA_KEYS.values()}})
    resolver = ResolverChain((StaticClientKeys.from_settings(settings), extra))
    return AuthEnv(settings, resolver, keys.load_or_create(dev_client_key_path(settings.state_dir, CLIENT)))


def sign(key: SigningKey, claims: dict[str, Any]) -> str:
    """A compact JWS over any claims (PyJWT's encoder refuses some of the malformed ones we need)."""
    header = b64url(json.dumps({"alg": key.alg, "kid": key.kid, "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}".encode("ascii")
    private = key.private
    if isinstance(private, ed25519.Ed25519PrivateKey):
        signature = private.sign(signing_input)
    else:
        r, s = utils.decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


def signing_keys(env: AuthEnv) -> dict[str, SigningKey]:
    return {"dev": env.dev_key, **EXTRA_KEYS}


def refused(env: AuthEnv, authorization: str | None) -> bool:
    """True when refused with Unauthenticated; False when accepted; any other exception propagates."""
    try:
        env.authenticate(authorization)
    except Unauthenticated:
        return True
    return False


@pytest.mark.parametrize("signer", ["dev", "EdDSA", "ES256"])
def test_a_correct_assertion_is_accepted(env: AuthEnv, signer: str) -> None:
    claims = env.claims()
    caller = env.authenticate("Bearer " + sign(signing_keys(env)[signer], claims))
    assert (caller.client_id, caller.jti) == (CLIENT, claims["jti"])


SEGMENTS = st.text(B64URL + "=+/ .", max_size=60)
B64_JSON = st.builds(lambda v: b64url(json.dumps(v).encode()), JSON_VALUES)
JOSE_HEADERS = st.builds(
    lambda h: b64url(json.dumps(h).encode()),
    st.fixed_dictionaries({"alg": st.sampled_from(["EdDSA", "ES256", "none", "HS256", "RS256", "", "EDDSA"])},
                          optional={"kid": st.one_of(KIDS, JSON_VALUES), "typ": JSON_VALUES, "crit": JSON_VALUES,
                                    "b64": st.booleans(), "jku": st.text(max_size=20)}),
)
PAYLOADS = st.one_of(
    B64_JSON,
    st.builds(lambda extra: b64url(json.dumps({"iss": CLIENT, "sub": CLIENT, **extra}).encode()),
              st.dictionaries(st.sampled_from(CLAIMS), JSON_VALUES, max_size=9)),
)
TOKENS = st.one_of(
    st.text(max_size=80),
    st.builds(".".join, st.lists(SEGMENTS, min_size=1, max_size=5)),
    st.builds(lambda h, p, s: f"{h}.{p}.{s}", st.one_of(JOSE_HEADERS, B64_JSON), PAYLOADS, SEGMENTS),
)
SCHEMES = st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer  ", "Bearer\t", "Basic ", "", " Bearer "])
LONG = st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=8), st.integers(1_000, 20_000))
AUTHORIZATION_TEXT = st.one_of(
    st.none(),
    st.text(),
    st.builds(lambda scheme, token: scheme + token, SCHEMES, TOKENS),
    st.builds(lambda scheme, token: scheme + token, SCHEMES, LONG),
)


@PROPERTIES
@given(AUTHORIZATION_TEXT)
@example(None)
@example("")
@example("Bearer")
@example("Bearer a.b.c")
def test_garbled_authorization_text_is_unauthenticated(env: AuthEnv, authorization: str | None) -> None:
    with pytest.raises(Unauthenticated):
        env.authenticate(authorization)


@PROPERTIES
@given(st.builds(lambda scheme, raw: scheme + raw.decode("utf-8", "surrogateescape"),
                 st.sampled_from(["Bearer ", ""]), st.binary(min_size=1, max_size=200)))
@example("Bearer \udcff")
def test_authorization_from_arbitrary_header_bytes_is_unauthenticated(env: AuthEnv, authorization: str) -> None:
    """What aiohttp hands over for header bytes that are not UTF-8 (``surrogateescape``)."""
    with pytest.raises(Unauthenticated):
        env.authenticate(authorization)


@PROPERTIES
@given(st.sampled_from(["dev", "EdDSA", "ES256"]), st.sampled_from(CLAIMS),
       st.one_of(st.just("<removed>"), JSON_VALUES))
def test_any_claim_altered_without_re_signing_is_refused(env: AuthEnv, signer: str, claim: str,
                                                         value: Any) -> None:
    claims = env.claims()
    header, _payload, signature = sign(signing_keys(env)[signer], claims).split(".")
    altered = dict(claims)
    if value == "<removed>":
        del altered[claim]
    else:
        altered[claim] = value
    payload = b64url(json.dumps(altered).encode())
    assume(payload != _payload)
    assert refused(env, f"Bearer {header}.{payload}.{signature}")


@pytest.mark.parametrize("signer", ["dev", "EdDSA", "ES256"])
@pytest.mark.parametrize("claim", CLAIMS)
def test_any_claim_removed_is_refused_even_if_re_signed(env: AuthEnv, signer: str, claim: str) -> None:
    claims = env.claims()
    del claims[claim]
    assert refused(env, "Bearer " + sign(signing_keys(env)[signer], claims))
    claims[claim] = None  # null is as good as missing
    assert refused(env, "Bearer " + sign(signing_keys(env)[signer], claims))


def still_valid(claims: dict[str, Any], gateway_id: str, now: int, leeway: int) -> bool | None:
    """Whether the contract allows these claims (None: too close to a time boundary to tell)."""

    def numeric(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

    aud = claims["aud"]
    jti = claims["jti"]
    if not (claims["iss"] == CLIENT and claims["sub"] == CLIENT and isinstance(jti, str) and 0 < len(jti) <= 256
            and claims["htm"] == "POST" and claims["htu"] == PATH and claims["body_sha256"] == body_digest(BODY)
            and aud == gateway_id):  # our contract: exactly one audience, this gateway; a non-empty jti
        return False
    iat, exp = claims["iat"], claims["exp"]
    if not (numeric(iat) and numeric(exp)) or exp - iat > 300:
        return False
    iat, exp = math.trunc(iat), math.trunc(exp)
    if abs(iat - (now + leeway)) <= 2 or abs(exp - (now - leeway)) <= 2:
        return None
    return bool(iat <= now + leeway and exp > now - leeway)


def changed_values(claim: str) -> st.SearchStrategy[Any]:
    """Values to put in place of ``claim``: anything, near misses of the right value, nearby times."""
    near = {
        "iss": ["anss.asd ", "ANSS.ASD", "cnss.amo-tadamon", "anss", ["anss.asd"]],
        "sub": ["anss.asd ", "ANSS.ASD", "cnss.amo-tadamon", ""],
        "aud": ["anss-gateway ", "ANSS-GATEWAY", "", ["anss-gateway"], ["other", "anss-gateway"], ["other"], []],
        "jti": ["", "x", 0, ["x"]],
        "htm": ["post", "GET", "POST ", ""],
        "htu": ["/v1/verifications/", "/v1/verifications?x=1", "/V1/verifications", "http://h/v1/verifications"],
        "body_sha256": [body_digest(BODY) + "=", body_digest(b""), body_digest(BODY).upper()],
    }.get(claim, [])
    relative = st.tuples(st.sampled_from(["int", "float", "str"]), st.integers(-1000, 1000))
    return st.one_of(JSON_VALUES, st.sampled_from(near or [None]), relative.map(lambda r: ("<relative>", *r)))


@pytest.mark.parametrize("signer", ["dev", "ES256"])
@pytest.mark.parametrize("claim", CLAIMS)
def test_any_claim_changed_is_refused_unless_the_assertion_stays_valid(env: AuthEnv, signer: str,
                                                                       claim: str) -> None:
    @PROPERTIES
    @given(changed_values(claim))
    @example(("<relative>", "str", 60))  # the number as a string
    @example(("<relative>", "int", 400))  # beyond the 300 s lifetime (or issued in the future)
    def check(value: Any) -> None:
        now = int(time.time())
        claims = env.claims(now)
        if isinstance(value, tuple) and value and value[0] == "<relative>":
            _, kind, offset = value
            base = claims[claim] if isinstance(claims[claim], int) else now
            value = {"int": base + offset, "float": base + offset + 0.5, "str": str(base + offset)}[kind]
        claims[claim] = value
        expected = still_valid(claims, env.settings.gateway_id, now, env.settings.clock_leeway_s)
        assume(expected is not None)
        assert refused(env, "Bearer " + sign(signing_keys(env)[signer], claims)) is not expected, (claim, value)

    check()


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_algorithm_confusion_is_refused(env: AuthEnv, alg: str) -> None:
    """An unsigned assertion, or one "signed" with HMAC keyed by the client's public key, is refused."""
    claims = env.claims()
    key = EXTRA_KEYS["EdDSA"]
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if alg == "none":
        token = signing_input + "."
    else:
        import hashlib
        import hmac

        secret = keys.public_pem(key.public)
        token = f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
    assert refused(env, "Bearer " + token)
    assert b64url_decode(token.split(".")[0])  # the header really names the client's key
