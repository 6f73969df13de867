"""The two sides of ``bench.verifications``, one verification each: (b) the baseline, the gateway's backend plan
through the project's own connectors with nothing around it; (a) the load generator, signed requests to the
gateway as ``GatewayClient`` sends them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson

from connectors.base import CallContext, Connector, ConnectorError, Query, Record, SourceNotFound
from connectors.transport import backend_session
from gateway.client import client_assertion
from gateway.crypto import keys
from gateway.crypto.jws import SIGNATURE_HEADER, SignatureInvalid, verify_detached
from gateway.crypto.keys import PublicKey, public_from_jwk
from gateway.crypto.outbound import OutboundSigner
from gateway.federation.checks.protocol import Operation
from gateway.federation.checks.registry import CheckRegistry, discover
from gateway.federation.evidence import Evidence
from gateway.federation.executor import Federation
from gateway.federation.plan import first_round, next_round

CLIENT_ID = "anss.asd"
PURPOSE = "asd.eligibility"
# --consent: a purpose resting on each citizen's consent, so every request also looks its consent up
CONSENT_CLIENT_ID = "mhpv.housing"
CONSENT_PURPOSE = "partner.social-housing"
CONSENT_PATH = "/v1/consents"
VERIFY_PATH = "/v1/verifications"


# ---------------------------------------------------------------- (b) the baseline


def new_session() -> aiohttp.ClientSession:
    """A client session set up as the gateway's own (``connectors.transport.backend_session``)."""
    return backend_session()


class Baseline:
    """The gateway's backend plan for one subject (gateway/federation/executor.py), with nothing around it:
    the same checks' plans (the check registry), run in the same rounds, without tallies or evaluation."""

    def __init__(self, connectors: Mapping[str, Connector], session: aiohttp.ClientSession, sign: OutboundSigner,
                 checks: tuple[str, ...], client_id: str = CLIENT_ID, purpose: str = PURPOSE,
                 registry: CheckRegistry | None = None) -> None:
        self.client_id, self.purpose = client_id, purpose
        self.routes = Federation(connectors).routes  # the same operation → connector routing
        self.session = session
        self.sign = sign
        known = registry if registry is not None else discover()
        self.plans = [known[c] for c in checks]

    async def _ask(self, op: Operation, ctx: CallContext, tally: dict[str, int]) -> Record | ConnectorError:
        connector = self.routes[op.name]
        tally[connector.name] = tally.get(connector.name, 0) + 1
        try:
            return await connector.fetch(Query(op.name, op.params), ctx)
        except ConnectorError as exc:
            return exc

    async def verify(self, idcs: str, tally: dict[str, int]) -> bool:
        """True if every backend answered (a subject unknown to one administration is an answer)."""
        evidence = Evidence(subject_idcs=idcs, today=datetime.now(UTC).date())
        ctx = CallContext(self.session, self.sign, uuid.uuid4().hex, self.client_id, self.purpose)
        calls = first_round(self.plans, evidence)
        ok, first = True, True
        while calls:
            answers = await asyncio.gather(*(self._ask(op, ctx, tally) for op in calls))
            for op, answer in zip(calls, answers, strict=True):
                evidence.answers[(op.name, op.key)] = answer
            ok = ok and all(isinstance(a, Record | SourceNotFound) for a in answers)
            if first:  # every sampled father exists, with his family: anything else is a failed run
                family = evidence.answers.get(("family", idcs))
                if not isinstance(evidence.answers[("person", idcs)], Record) or isinstance(family, ConnectorError):
                    return False
                first = False
            calls = next_round(self.plans, evidence)
        return ok


# ---------------------------------------------------------------- (a) the gateway's load generator


class GatewayLoad:
    """Signed verification requests, as ``GatewayClient`` sends them; counts the backend calls answered."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, key: keys.SigningKey, audience: str,
                 client_id: str = CLIENT_ID, purpose: str = PURPOSE) -> None:
        self.client_id, self.purpose = client_id, purpose
        self.url = base_url.rstrip("/") + VERIFY_PATH
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.key = key
        self.audience = audience
        self.gateway_keys: dict[str, PublicKey] = {}
        self.verify_signatures = False
        self.bad_signatures = 0

    async def fetch_keys(self) -> None:
        async with self.session.get(f"{self.base_url}/.well-known/jwks.json") as resp:
            document = await resp.json(content_type=None)
        self.gateway_keys = {k["kid"]: public_from_jwk(k) for k in document["keys"]}

    async def verify(self, idcs: str, case_ref: str, tally: dict[str, int]) -> bool:
        body = orjson.dumps({"subject": {"idcs": idcs}, "purpose": self.purpose, "case_ref": case_ref})
        headers = {"Content-Type": "application/json",
                   "Authorization": "Bearer " + client_assertion(self.key, self.client_id, self.audience, "POST",
                                                                 VERIFY_PATH, body)}
        async with self.session.post(self.url, data=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
            signature = resp.headers.get(SIGNATURE_HEADER)
        ok = status == 200
        if self.verify_signatures:
            try:
                verify_detached(signature or "", raw, self.gateway_keys)
            except SignatureInvalid:
                self.bad_signatures += 1
                ok = False
        if status != 200:
            return False
        for source in orjson.loads(raw)["sources"]:
            tally[source["name"]] = tally.get(source["name"], 0) + source["calls"]
            ok = ok and source["status"] == "ok"
        return ok

    async def grant_consents(self, subjects: list[str], checks: tuple[str, ...], concurrency: int) -> int:
        """Record each subject's consent to this client's purpose through ``/v1/consents``, untimed."""
        began = time.perf_counter()
        until = (datetime.now(UTC) + timedelta(days=365)).isoformat()
        pending = iter(subjects)
        granted = 0

        async def worker() -> None:
            nonlocal granted
            for idcs in pending:
                body = orjson.dumps({"subject": {"idcs": idcs}, "grantee": self.client_id, "purpose": self.purpose,
                                     "checks": list(checks), "valid_until": until,
                                     "evidence": {"kind": "document", "id": "bench-signed-form"}})
                token = client_assertion(self.key, self.client_id, self.audience, "POST", CONSENT_PATH, body)
                async with self.session.post(self.base_url + CONSENT_PATH, data=body, headers={
                        "Content-Type": "application/json", "Authorization": "Bearer " + token}) as resp:
                    await resp.read()
                    if resp.status != 201:
                        raise RuntimeError(f"granting a consent failed with HTTP {resp.status}")
                granted += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(f"  recorded {granted:,} consents through {CONSENT_PATH} in {time.perf_counter() - began:.1f} s",
              flush=True)
        return granted
