"""A real gateway stack for the officers' tests, an officer's client on it, and the access log as stored."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.client import GatewayClient
from tests.gateway.conftest import Stack, build_stack

OFFICER = "dgssi.officer"  # config/clients.toml: role = "officer"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with build_stack(tmp_path) as built:
        yield built


@pytest.fixture
async def officer(stack: Stack) -> AsyncIterator[GatewayClient]:
    async with stack.client_for(OFFICER) as client:
        yield client


def calls(stack: Stack) -> int:
    """Calls the four administrations have received so far."""
    return sum(control.calls for control in stack.simulators.controls.values())


def stored_entries(stack: Stack) -> list[dict[str, Any]]:
    """Every kept entry of the access log, read from the file as an auditor would."""
    conn = sqlite3.connect(stack.settings.audit_database)
    try:
        return [dict(orjson.loads(r[0])) for r in
                conn.execute("SELECT entry FROM access_log WHERE entry IS NOT NULL ORDER BY idx")]
    finally:
        conn.close()


def raw_log(stack: Stack) -> bytes:
    """The whole database file and its WAL, byte for byte (to look for what must never be there)."""
    path = stack.settings.audit_database
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
