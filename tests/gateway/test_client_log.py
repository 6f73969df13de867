"""``gateway.client_log.LogWatch`` on its own: the rules of docs/merkle-log.md section 14, with checkpoints of a
real Merkle log held in memory and its real consistency proofs (the whole gateway: tests/cli/test_client_fork.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import checkpoint as cp
from gateway.client_log import (
    LogCheckpointInvalid,
    LogForked,
    LogWatch,
    LogWatchError,
    ProofUnavailable,
    default_state_path,
)
from tests.audit.witness.support import LOG_VKEY, ORIGIN, MemoryLog

WITNESS = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))


def header(note: str) -> str:
    return base64.b64encode(note.encode()).decode()


def largest(state: Path) -> int:
    (entry,) = json.loads(state.read_text(encoding="utf-8"))["logs"].values()
    return cp.parse_checkpoint(cp.parse_note(entry["note"]).text).size


async def test_growth_lagging_replicas_and_more_cosignatures_are_accepted(tmp_path: Path) -> None:
    state = tmp_path / "checkpoints.json"
    log = MemoryLog(10)
    watch = LogWatch(LOG_VKEY, state)
    assert (await watch.observe(header(log.note(5)), log.consistency_proof)).size == 5  # trust on first use
    assert (await watch.observe(header(log.note(10)), log.consistency_proof)).size == 10
    assert (await watch.observe(header(log.note(7)), log.consistency_proof)).size == 7  # a replica behind
    assert largest(state) == 10
    assert sorted(map(int, json.loads(state.read_text())["logs"][watch.log_key]["roots"])) == [5, 7, 10]
    body = cp.parse_note(log.note(10)).text
    cosigned = cp.add_signatures(log.note(10), [cp.cosign(body, "cndp.ma/witness", WITNESS, 1764700000)])
    await watch.observe(header(cosigned), log.consistency_proof)
    assert json.loads(state.read_text())["logs"][watch.log_key]["note"] == cosigned
    await LogWatch(LOG_VKEY, state).observe(header(log.note(10)), log.consistency_proof)  # fewer: the file keeps more
    assert json.loads(state.read_text())["logs"][watch.log_key]["note"] == cosigned


async def test_forks_are_reported_and_never_kept(tmp_path: Path) -> None:
    state = tmp_path / "checkpoints.json"
    log = MemoryLog(10)
    watch = LogWatch(LOG_VKEY, state)
    await watch.observe(header(log.note(4)), log.consistency_proof)
    await watch.observe(header(log.note(10)), log.consistency_proof)
    before = state.read_bytes()
    forked = log.fork(6, "b").grow(2)
    for size, reason in ((10, "another root for size 10"), (12, "proof from size 10 to 12 does not verify"),
                         (8, "proof from size 8 to 10 does not verify")):
        with pytest.raises(LogForked, match=reason) as raised:
            await LogWatch(LOG_VKEY, state).observe(header(forked.note(size)), forked.consistency_proof)
        assert raised.value.held.size == 10 and raised.value.shown.size == size
        assert str(raised.value).count("checkpoint size") == 2
        assert state.read_bytes() == before
    with pytest.raises(LogForked, match="another root for size 4"):  # a size seen before, not the largest
        await LogWatch(LOG_VKEY, state).observe(header(MemoryLog(4, tag="c").note(4)), log.consistency_proof)

    async def gone(old: int, new: int) -> list[bytes]:
        raise ProofUnavailable("HTTP 400 tree_size_beyond_log")
    with pytest.raises(LogForked, match="no longer holds the 10 entries"):
        await LogWatch(LOG_VKEY, state).observe(header(log.note(6)), gone)

    async def busy(old: int, new: int) -> list[bytes]:
        raise ProofUnavailable("HTTP 429 rate_limited")
    with pytest.raises(ProofUnavailable):  # nothing decided
        await LogWatch(LOG_VKEY, state).observe(header(log.note(6)), busy)
    assert state.read_bytes() == before


async def test_invalid_headers_and_state_files(tmp_path: Path) -> None:
    state = tmp_path / "checkpoints.json"
    log = MemoryLog(3)
    watch = LogWatch(LOG_VKEY, state)
    other_key = Ed25519PrivateKey.generate()
    for bad in ("not base64!", header("no note"), header(log.note(3, key=other_key)),
                header(log.note(3, origin="another.log")), header(log.note(3)) + "x"):
        with pytest.raises(LogCheckpointInvalid):
            await watch.observe(bad, log.consistency_proof)
    assert not state.exists()
    state.write_text("{}", encoding="utf-8")
    with pytest.raises(LogWatchError, match="not a checkpoint state file"):
        await watch.observe(header(log.note(3)), log.consistency_proof)
    assert default_state_path({"XDG_STATE_HOME": "/x"}) == Path("/x/anss-gateway/checkpoints.json")
    assert default_state_path({"ANSS_GATEWAY_CLIENT_STATE": "/y.json", "XDG_STATE_HOME": "/x"}) == Path("/y.json")
    assert LOG_VKEY.name == ORIGIN
