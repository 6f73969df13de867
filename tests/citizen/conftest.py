"""A real gateway in front of the four simulators, trusting the tests' own identity provider for citizens."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from gateway.audit import Pseudonymiser
from gateway.client import Answer
from gateway.config.settings import Settings
from tests.citizen.idp import AUDIENCE, ISSUER, IdentityProvider
from tests.consent.conftest import with_consent_clients
from tests.gateway.conftest import Stack, build_stack

PATH = "/v1/citizen/access-log"


@dataclass
class CitizenStack:
    stack: Stack
    idp: IdentityProvider

    @property
    def pseudonymiser(self) -> Pseudonymiser:
        settings = self.stack.settings
        return Pseudonymiser.load(settings.pseudonym_key_file, settings.state_dir)

    async def read(self, token: str | None, query: str = "", headers: dict[str, str] | None = None) -> Answer:
        """``GET /v1/citizen/access-log`` as a citizen's browser or app sends it; the answer's signature checked."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as session, session.get(
            self.stack.gateway.url + PATH + query, headers=sent
        ) as resp:
            raw = await resp.read()
            answer_headers = CIMultiDict(resp.headers)
        return Answer(resp.status, raw, answer_headers,
                      await self.stack.client.verify_signature(answer_headers, raw))

    def log(self) -> list[tuple[bytes, dict[str, Any]]]:
        """Every entry of the access log: its exact bytes and decoded."""
        conn = sqlite3.connect(self.stack.settings.audit_database)
        try:
            rows = conn.execute("SELECT entry FROM access_log ORDER BY idx").fetchall()
        finally:
            conn.close()
        return [(bytes(r[0]), orjson.loads(r[0])) for r in rows if r[0] is not None]


def trusting(idp: IdentityProvider) -> Any:
    def adjust(settings: Settings) -> Settings:
        citizens = replace(settings.citizens, issuer=ISSUER, audience=AUDIENCE, jwks_file=idp.jwks_file,
                           clock_leeway_s=30)
        return replace(with_consent_clients(settings), citizens=citizens)

    return adjust


@pytest.fixture
async def citizens(tmp_path: Path) -> AsyncIterator[CitizenStack]:
    (tmp_path / "idp").mkdir()
    idp = IdentityProvider.create(tmp_path / "idp")
    async with build_stack(tmp_path, trusting(idp)) as stack:
        yield CitizenStack(stack, idp)
