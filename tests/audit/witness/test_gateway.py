"""A running gateway with a witness on loopback: its heads are cosigned; a database cut behind the high-water
checkpoint — at rest, then restarted, or live — makes it refuse everything with 503 ``access_log_corrupt``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.audit import checkpoint as cp
from gateway.audit import log_id_for
from gateway.audit.witness.config import load_config
from gateway.audit.witness.guard import load_checkpoint_key
from gateway.audit.witness.service import RunningWitness
from gateway.config.settings import Settings
from gateway.config.witnesses import WitnessingSettings, WitnessSetting
from gateway.web.state import RUNTIME
from tests.audit.witness.support import ask_verification, held_size, running_witness, write_config
from tests.gateway.conftest import build_stack, make_settings


@pytest.fixture
async def witness(tmp_path: Path) -> AsyncIterator[RunningWitness]:
    settings = make_settings(tmp_path / "state")
    key = load_checkpoint_key(settings.witnessing.key_path(settings.state_dir))
    origin = log_id_for(settings.gateway_id)
    (tmp_path / "witness").mkdir()
    path = write_config(tmp_path / "witness", vkeys=(cp.verifier_key(origin, key).encode(),))
    path.write_text(path.read_text(encoding="utf-8").replace("anss.gov.ma/access-log", origin), encoding="utf-8")
    async with running_witness(load_config(path)) as running:
        yield running


def witnessed_by(witness: RunningWitness) -> Callable[[Settings], Settings]:
    def adjust(settings: Settings) -> Settings:
        return replace(settings, tree_head_max_entries=1, witnessing=WitnessingSettings(
            witnesses=(WitnessSetting(witness.url, witness.witness.vkey),), quorum=1))
    return adjust


def cut(database: Path, keep: int) -> None:
    """What someone with write access to the file can do: drop the triggers, remove the tail and its heads."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DELETE FROM access_log WHERE idx >= ?", (keep,))
        conn.execute("DELETE FROM tree_heads WHERE tree_size > ?", (keep,))
    finally:
        conn.close()


async def test_heads_are_cosigned_and_a_cut_database_is_refused_at_start(
        tmp_path: Path, witness: RunningWitness) -> None:
    async with build_stack(tmp_path, witnessed_by(witness)) as stack:
        origin = log_id_for(stack.settings.gateway_id)
        for i in range(3):
            assert (await ask_verification(stack, f"CASE-{i}"))[0] == 200
        await held_size(witness, origin, 3)
        database = stack.settings.audit_database
    high_water = (await witness.witness.state.held(origin))
    assert high_water is not None
    cut(database, 2)
    async with build_stack(tmp_path, witnessed_by(witness)) as stack:
        assert await ask_verification(stack, "CASE-AFTER") == (503, "access_log_corrupt")
        async with stack.client.session.get(stack.gateway.url + "/healthz") as response:
            assert response.status == 200
        async with stack.client.session.get(stack.gateway.url + "/readyz") as response:
            assert response.status == 503
            assert (await response.json())["checks"]["store"] is False
        guard = stack.gateway.runner.app[RUNTIME].log_guard
        assert guard is not None and guard.corrupt is not None and "fewer than" in guard.corrupt


async def test_a_live_cut_is_refused_before_the_next_head(tmp_path: Path, witness: RunningWitness) -> None:
    async with build_stack(tmp_path, witnessed_by(witness)) as stack:
        origin = log_id_for(stack.settings.gateway_id)
        for i in range(4):
            assert (await ask_verification(stack, f"CASE-{i}"))[0] == 200
        size = await held_size(witness, origin, 4)
        cut(stack.settings.audit_database, 1)
        guard = stack.gateway.runner.app[RUNTIME].log_guard
        assert guard is not None
        for i in range(600):  # each answered request is a new entry: the next round checks before signing
            if guard.corrupt is not None:
                break
            await ask_verification(stack, f"CASE-LIVE-{i}")
            await asyncio.sleep(0.05)
        assert guard.corrupt is not None
        assert await ask_verification(stack, "CASE-REFUSED") == (503, "access_log_corrupt")
        held = await witness.witness.state.held(origin)
        assert held is not None and held.size == size  # no second root was signed for any size
