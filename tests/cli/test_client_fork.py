"""The bundled client reports a fork of the gateway's log: a real gateway, its log grown and watched by the
client (``GatewayClient`` with a ``LogWatch``, and ``anss-gateway client verify --log-vkey``), then restarted
on a forged database with its high-water file removed and no witness, so that it signs a second root for a size
the client already saw (docs/merkle-log.md section 14)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import checkpoint as cp
from gateway.audit import log_id_for
from gateway.audit.witness.guard import load_checkpoint_key
from gateway.cli.main import main
from gateway.client import GatewayClient
from gateway.client_log import LogCheckpointInvalid, LogForked, LogWatch
from gateway.config.settings import Settings
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path
from gateway.web.checkpoint import BEACON
from gateway.web.state import RUNTIME
from tests.gateway.conftest import Stack, build_stack


def every_entry(settings: Settings) -> Settings:
    return replace(settings, tree_head_max_entries=1)


def watched(stack: Stack, watch: LogWatch) -> GatewayClient:
    key = keys.load_or_create(dev_client_key_path(stack.settings.state_dir, "anss.asd"))
    return GatewayClient(stack.gateway.url, "anss.asd", key, stack.settings.gateway_id, log_watch=watch)


async def grow(stack: Stack, client: GatewayClient, case: str) -> int:
    """One verification, then wait until the gateway's checkpoint covers the whole log; its size."""
    mother = stack.population.fixture("deceased_father").mother
    assert (await client.verify({"idcs": mother.idcs}, "asd.eligibility", case)).status == 200
    beacon = stack.gateway.runner.app[BEACON]
    for _ in range(400):
        count = await stack.gateway.runner.app[RUNTIME].access_log.count()
        if beacon.size == count:
            return count
        await asyncio.sleep(0.05)
    raise AssertionError("no checkpoint of the whole log")


def held(state: Path) -> tuple[int, dict[str, str]]:
    (entry,) = json.loads(state.read_text(encoding="utf-8"))["logs"].values()
    return cp.parse_checkpoint(cp.parse_note(entry["note"]).text).size, entry["roots"]


def forge(settings: Settings, keep: int) -> None:
    """What someone with write access to the state directory can do: cut the database to ``keep`` entries (its
    heads, checkpoints and index rows above with them, triggers dropped) and delete the high-water file."""
    conn = sqlite3.connect(settings.audit_database, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        for table in ("access_log", "access_index", "access_index_checks", "access_index_sources",
                      "access_index_persons"):
            conn.execute(f"DELETE FROM {table} WHERE idx >= ?", (keep,))
        conn.execute("DELETE FROM tree_heads WHERE tree_size > ?", (keep,))
        conn.execute("DELETE FROM checkpoints WHERE tree_size > ?", (keep,))
    finally:
        conn.close()
    settings.witnessing.high_water_path(settings.state_dir).unlink()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().err


async def test_the_client_accepts_growth_and_reports_a_fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "client" / "checkpoints.json"
    async with build_stack(tmp_path, every_entry) as stack:
        monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(stack.settings.state_dir))
        vkey = cp.verifier_key(log_id_for(stack.settings.gateway_id),
                               load_checkpoint_key(stack.settings.witnessing.key_path(stack.settings.state_dir)))
        watch = LogWatch(vkey, state)
        sizes, grown = [], []
        async with watched(stack, watch) as client:
            for i in range(4):  # normal growth: each larger checkpoint proven consistent with the one held
                grown.append(await grow(stack, client, f"CASE-{i}"))
                await client.request("GET", "/v1/services")  # the answer that shows it (and is logged too)
                sizes.append(held(state)[0])
        assert sizes == grown and sizes == sorted(set(sizes))
        assert set(map(int, held(state)[1])) >= set(grown)
        flags = ["--log-vkey", vkey.encode(), "--checkpoint-state", str(state), "--url", stack.gateway.url]
        code, err = await cli(capsys, "client", "verify", "--idcs", stack.population.fixture("deceased_father")
                              .mother.idcs, "--check", "identity", *flags)
        assert code == 0, err
        settings = stack.settings
        top = await grow(stack, stack.client, "CASE-UNSEEN")  # a size the client has not seen
    size_seen, _ = held(state)
    before = state.read_bytes()

    forge(settings, keep=2)  # no witness is configured: nothing outside the state directory remembers
    async with build_stack(tmp_path, every_entry) as stack:
        for i in range(size_seen - 2):  # the forged log grows back to a size the client saw, with another root
            await grow(stack, stack.client, f"FORGED-{i}")  # (an unwatched client)
        assert stack.gateway.runner.app[BEACON].size == size_seen
        async with watched(stack, LogWatch(vkey, state)) as client:
            with pytest.raises(LogForked) as forked:
                await client.request("GET", "/v1/services")
        message = str(forked.value)
        assert f"checkpoint size {size_seen} root" in message and "another root" in message
        assert forked.value.held.size == forked.value.shown.size == size_seen
        assert forked.value.held.root_hash != forked.value.shown.root_hash
        assert state.read_bytes() == before  # the forked checkpoint is not kept
        # the command line: one loud line naming both checkpoints, exit 3, the state file as it was
        code, err = await cli(capsys, "client", "verify", "--idcs", stack.population.fixture("deceased_father")
                              .mother.idcs, "--check", "identity", "--log-vkey", vkey.encode(),
                              "--checkpoint-state", str(state), "--url", stack.gateway.url)
        assert code == 3, err
        (line,) = [x for x in err.splitlines() if x.startswith("LOG FORK")]
        assert line.count("checkpoint size") == 2 and str(state) in line
        assert state.read_bytes() == before
        # a larger checkpoint of the forged log: its proof from the size held does not verify either
        await grow(stack, stack.client, "FORGED-MORE")
        assert stack.gateway.runner.app[BEACON].size > size_seen
        async with watched(stack, LogWatch(vkey, state)) as client:
            with pytest.raises(LogForked, match=f"proof from size {size_seen} to .* does not verify"):
                await client.request("GET", "/v1/services")
        assert state.read_bytes() == before
        # and a header signed by another key is refused as such
        other = cp.verifier_key(vkey.name, Ed25519PrivateKey.generate())
        async with watched(stack, LogWatch(other, state)) as client:
            with pytest.raises(LogCheckpointInvalid):
                await client.request("GET", "/v1/services")
    assert top > size_seen
