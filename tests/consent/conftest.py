"""Consent-registry backends for the contract suite, and a gateway stack set up for consent tests.

``consents`` runs each contract test once per implementation (SQLite, and PostgreSQL in a fresh schema).
``backend.new()`` opens one more instance on the *same* store — another replica or the ``consent`` CLI on
the same file or schema — and every instance is closed after the test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config.settings import ClientSettings, Purpose, Right, Settings
from gateway.policy.consent import ConsentStore, SqliteConsentStore
from gateway.policy.consent.postgres import PostgresConsentStore
from tests.audit.pg_support import fresh_schema_async
from tests.gateway.conftest import Stack, build_stack

PURPOSE = "partner.social-housing"  # consent-based, in config/purposes.toml
SECOND_PURPOSE = "partner.second-programme"  # consent-based, added for these tests
GRANTEE = "mhpv.housing"  # manages consents for both purposes, queries both (config/clients.toml + below)
OTHER = "other.partner"  # may query PURPOSE, manages no consents
OFFICE = "anss.consent-office"  # manages consents of SECOND_PURPOSE only, queries nothing


@dataclass
class Backend:
    name: str
    factory: Callable[[], Awaitable[ConsentStore]]
    opened: list[ConsentStore] = field(default_factory=list)

    async def new(self) -> ConsentStore:
        store = await self.factory()
        self.opened.append(store)
        return store


@pytest.fixture(params=["sqlite", "postgres"])
async def consents(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":  # a fresh schema of the real server (tests/audit/pg_support.py)
        async with fresh_schema_async() as target:

            async def postgres_store() -> ConsentStore:
                store = PostgresConsentStore(target)
                await store.open()
                return store

            async with _closing(Backend(request.param, postgres_store)) as backend:
                yield backend
        return
    path = tmp_path / "consents.sqlite3"

    async def sqlite_store() -> ConsentStore:
        store = SqliteConsentStore(path)
        await store.open()
        return store

    async with _closing(Backend(request.param, sqlite_store)) as backend:
        yield backend


@asynccontextmanager
async def _closing(backend: Backend) -> AsyncIterator[Backend]:
    try:
        yield backend
    finally:
        for store in backend.opened:
            await store.close()


def with_consent_clients(settings: Settings) -> Settings:
    """A second consent-based purpose, a grantee without consent rights and a consent-only office."""
    purposes = {**settings.purposes, SECOND_PURPOSE: Purpose(SECOND_PURPOSE, "A second partner programme",
                                                             "consent", None, ("identity", "household"))}
    clients = dict(settings.clients)
    housing = clients[GRANTEE]
    clients[GRANTEE] = replace(housing, rights=(
        *housing.rights, Right(SECOND_PURPOSE, frozenset({"identity", "household"}), manage_consents=True)))
    clients[OTHER] = ClientSettings(OTHER, "Another partner", (), True,
                                    (Right(PURPOSE, frozenset({"identity", "household", "employment"})),))
    clients[OFFICE] = ClientSettings(OFFICE, "Consent office", (), True,
                                     (Right(SECOND_PURPOSE, frozenset(), manage_consents=True),))
    return replace(settings, purposes=purposes, clients=clients)


@asynccontextmanager
async def consent_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with build_stack(tmp_path, with_consent_clients) as stack:
        yield stack


@pytest.fixture
async def cstack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with consent_stack(tmp_path) as stack:
        yield stack


def calls(stack: Stack) -> int:
    """Calls the four administrations have received so far."""
    return sum(control.calls for control in stack.simulators.controls.values())


def entries(stack: Stack) -> list[dict[str, Any]]:
    conn = sqlite3.connect(stack.settings.audit_database)
    try:
        return [dict(orjson.loads(r[0])) for r in conn.execute("SELECT entry FROM access_log ORDER BY idx")]
    finally:
        conn.close()


def last_entry(stack: Stack) -> dict[str, Any]:
    return entries(stack)[-1]
