"""The bundled client: signs requests the way the gateway expects and verifies every answer's signature.

Partners can read it as the reference implementation of the JWT contract (see README, "Calling it"). Given a
``LogWatch`` (``gateway.client_log``), it also checks every answer's ``Log-Checkpoint`` header against the
largest checkpoint it has seen of the gateway's log, through ``GET /log/consistency``, and raises
``LogForked`` (a ``LogWatchError``) when the gateway shows a history that cannot be the one it showed before.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from gateway.client_log import LogWatch, ProofUnavailable
from gateway.crypto.jws import SIGNATURE_HEADER, request_digest, sign_compact, verify_detached
from gateway.crypto.keys import PublicKey, SigningKey, b64url_decode, public_from_jwk
from gateway.crypto.outbound import body_digest

LOG_CHECKPOINT_HEADER = "Log-Checkpoint"  # gateway.web.checkpoint.HEADER (the client needs none of the server)


def client_assertion(key: SigningKey, client_id: str, audience: str, method: str, path_qs: str, body: bytes,
                     lifetime_s: int = 60, now: int | None = None, jti: str | None = None) -> str:
    issued = int(time.time()) if now is None else now
    claims = {
        "iss": client_id, "sub": client_id, "aud": audience, "iat": issued, "exp": issued + lifetime_s,
        "jti": jti or uuid.uuid4().hex, "htm": method.upper(), "htu": path_qs, "body_sha256": body_digest(body),
    }
    return sign_compact(key, {"typ": "JWT"}, orjson.dumps(claims))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDict[str]
    signature_header: dict[str, Any] | None  # verified JWS protected header; None if invalid or not ours

    def json(self) -> Any:
        return orjson.loads(self.body)


class GatewayClient:
    def __init__(self, base_url: str, client_id: str, key: SigningKey, gateway_id: str = "anss-gateway",
                 session: aiohttp.ClientSession | None = None, log_watch: LogWatch | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.key = key
        self.gateway_id = gateway_id
        self._session = session
        self._owns_session = session is None
        self._gateway_keys: dict[str, PublicKey] = {}
        self._looked_for: dict[str | None, float] = {}  # kids the JWKS was fetched again for, and when
        self.log_watch = log_watch

    async def __aenter__(self) -> GatewayClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with GatewayClient(...)`"
        return self._session

    async def refresh_keys(self) -> None:
        async with self.session.get(f"{self.base_url}/.well-known/jwks.json") as resp:
            document = await resp.json(content_type=None)
        self._gateway_keys = {k["kid"]: public_from_jwk(k) for k in document["keys"]}

    async def request(self, method: str, path: str, document: Any | None = None,
                      body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        if body is None:
            body = orjson.dumps(document) if document is not None else b""
        jti = uuid.uuid4().hex
        all_headers = {"Content-Type": "application/json",
                       "Authorization": "Bearer " + client_assertion(
                           self.key, self.client_id, self.gateway_id, method, path, body, jti=jti)}
        all_headers.update(headers or {})
        async with self.session.request(method, self.base_url + path, data=body, headers=all_headers) as resp:
            raw = await resp.read()
            answer_headers = CIMultiDict(resp.headers)
            status = resp.status
        header = await self.verify_signature(answer_headers, raw)
        # the answer to this question: bound to this jti — or, for a refusal made before the assertion was
        # accepted, to an empty jti and the body as read (all of it, or none: docs/security.md section 2)
        questions = {request_digest(jti, body)}
        if status >= 400:
            questions |= {request_digest("", body), request_digest("", b"")}
        if header is not None and header.get("request_sha256") not in questions:
            header = None  # a valid signature, but over the answer to another question
        await self.watch_log(answer_headers)
        return Answer(status, raw, answer_headers, header)

    async def watch_log(self, headers: CIMultiDict[str]) -> None:
        """With a ``log_watch``: check the answer's ``Log-Checkpoint`` (``LogForked``, ``LogCheckpointInvalid``)."""
        value = headers.get(LOG_CHECKPOINT_HEADER)
        if self.log_watch is not None and value is not None:
            await self.log_watch.observe(value, self.consistency_proof)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """``GET /log/consistency``: the gateway's proof that its tree of ``new_size`` extends that of
        ``old_size``; ``ProofUnavailable`` (with the problem's code) when it gives none."""
        url = f"{self.base_url}/log/consistency?from={old_size}&to={new_size}"
        try:
            async with self.session.get(url) as resp:
                raw, status = await resp.read(), resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ProofUnavailable(f"the gateway is unreachable: {type(exc).__name__}") from exc
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = None
        if status != 200 or not isinstance(document, dict):
            code = document.get("code") if isinstance(document, dict) else None
            raise ProofUnavailable(f"HTTP {status} {code or ''}".strip())
        try:
            proof = [base64.b64decode(h, validate=True) for h in document["proof"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProofUnavailable("the proof is malformed") from exc
        if (document.get("from"), document.get("to")) != (old_size, new_size) or any(len(h) != 32 for h in proof):
            raise ProofUnavailable("the proof is not for the sizes asked")
        return proof

    async def verify_signature(self, headers: CIMultiDict[str], body: bytes) -> dict[str, Any] | None:
        token = headers.get(SIGNATURE_HEADER)
        if token is None:
            return None
        kid, now = _kid_of(token), time.monotonic()
        if not self._gateway_keys or (kid not in self._gateway_keys and now - self._looked_for.get(kid, -2.0) >= 1.0):
            if len(self._looked_for) >= 64:
                self._looked_for.clear()
            self._looked_for[kid] = now  # a key rotated since: the JWKS fetched again, once a second per kid
            await self.refresh_keys()
        try:
            return verify_detached(token, body, self._gateway_keys)
        except ValueError:
            return None

    async def verify(self, subject: dict[str, str], purpose: str, case_ref: str,
                     checks: list[str] | None = None, as_of: str | None = None,
                     language: str | None = None) -> Answer:
        """POST /v1/verifications; ``as_of`` (YYYY-MM-DD) verifies as on an earlier date, ``language`` is sent
        as ``Accept-Language`` (the words of explanations: ``fr`` by default, or ``en``)."""
        document: dict[str, Any] = {"subject": subject, "purpose": purpose, "case_ref": case_ref}
        if checks:
            document["checks"] = checks
        if as_of:
            document["as_of"] = as_of
        headers = {"Accept-Language": language} if language else None
        return await self.request("POST", "/v1/verifications", document, headers=headers)


def _kid_of(token: str) -> str | None:
    """The ``kid`` a detached JWS names (not trusted: it only says whether the keys held could verify it)."""
    try:
        header = orjson.loads(b64url_decode(token.split(".")[0]))
    except (ValueError, IndexError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
