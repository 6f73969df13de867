"""The witness server (C2SP tlog-witness add-checkpoint) on loopback, over its real SQLite state file."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import checkpoint as cp
from gateway.audit.witness.config import WitnessConfig, load_witness_key, witness_verifier_key
from gateway.audit.witness.protocol import AddCheckpoint, parse_cosignatures
from gateway.audit.witness.service import RunningWitness
from gateway.audit.witness.state import WitnessState
from tests.audit.witness.support import LOG_VKEY, ORIGIN, MemoryLog, digest, running_witness, witness_config


@pytest.fixture
def config(tmp_path: Path) -> WitnessConfig:
    return witness_config(tmp_path)


@pytest.fixture
async def witness(config: WitnessConfig) -> AsyncIterator[RunningWitness]:
    async with running_witness(config) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def post(session: aiohttp.ClientSession, witness: RunningWitness, body: bytes) -> tuple[int, str, str]:
    async with session.post(witness.url + "/add-checkpoint", data=body) as response:
        return response.status, response.content_type, await response.text()


def cosigned(note: str, answer: str, vkey: cp.VerifierKey) -> tuple[cp.Cosignature, ...]:
    return cp.verify_cosignatures(cp.add_signatures(note, parse_cosignatures(answer.encode())), [vkey])


async def test_first_checkpoint_and_consistent_extension_are_cosigned(
        witness: RunningWitness, session: aiohttp.ClientSession, config: WitnessConfig) -> None:
    log = MemoryLog(5)
    status, content_type, answer = await post(session, witness, log.request(0))
    assert (status, content_type) == (200, "text/plain")
    vkey = witness_verifier_key(config, load_witness_key(config.key_file))
    assert [c.name for c in cosigned(log.note(), answer, vkey)] == ["cndp.ma/witness"]

    log.grow(4)
    status, _, answer = await post(session, witness, log.request(5))
    assert status == 200
    (cosignature,) = cosigned(log.note(), answer, vkey)
    assert cosignature.timestamp > 1_700_000_000
    held = await witness.witness.state.held(ORIGIN)
    assert held is not None and (held.size, held.root_hash) == (9, log.root())
    # the witness publishes its verifier key
    async with session.get(witness.url + "/") as response:
        assert (await response.text()).strip() == vkey.encode()


async def test_a_cosignature_does_not_verify_for_another_checkpoint(
        witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    log = MemoryLog(3)
    _, _, answer = await post(session, witness, log.request(0))
    other = MemoryLog(3, tag="b").note()
    with pytest.raises(cp.CheckpointError, match="does not verify"):
        cosigned(other, answer, witness.witness.vkey)


async def test_a_rollback_is_refused(witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    log = MemoryLog(9)
    assert (await post(session, witness, log.request(0)))[0] == 200
    # a smaller checkpoint claiming to extend the held one
    status, _, _ = await post(session, witness, AddCheckpoint(9, (), log.note(5)).encode())
    assert status == 400
    # a smaller checkpoint from its own (stale) old size: 409 naming the size held
    status, content_type, body = await post(session, witness, log.request(3, 5))
    assert (status, content_type, body) == (409, "text/x.tlog.size", "9\n")
    held = await witness.witness.state.held(ORIGIN)
    assert held is not None and held.size == 9


async def test_a_fork_of_the_same_size_is_a_conflict(witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    log = MemoryLog(9)
    assert (await post(session, witness, log.request(0)))[0] == 200
    forked = log.fork(6, "b")
    status, content_type, body = await post(session, witness, AddCheckpoint(9, (), forked.note()).encode())
    assert (status, content_type, body) == (409, "text/x.tlog.size", "9\n")
    # resubmitting the held checkpoint itself is fine (and cosigned again)
    assert (await post(session, witness, AddCheckpoint(9, (), log.note()).encode()))[0] == 200
    assert await witness.witness.state.refused(ORIGIN) == [
        (409, "same size as the held checkpoint, another root hash")]


async def test_an_inconsistent_extension_is_unprocessable(
        witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    log = MemoryLog(9)
    assert (await post(session, witness, log.request(0)))[0] == 200
    forked = log.fork(4, "b").grow(5)  # rewrites entries 4.. and grows to 14
    status, _, body = await post(session, witness, forked.request(9))
    assert (status, body) == (422, "the consistency proof does not verify\n")
    # a proof of the right shape from the honest log, under a forked root, fails too
    honest = MemoryLog(9).grow(5)
    proof = tuple(await honest.consistency_proof(9, 14))
    status, _, _ = await post(session, witness, AddCheckpoint(9, proof, forked.note()).encode())
    assert status == 422
    # so does a truncated or empty proof
    assert (await post(session, witness, AddCheckpoint(9, proof[:-1], honest.note()).encode()))[0] == 422
    assert (await post(session, witness, AddCheckpoint(9, (), honest.note()).encode()))[0] == 422
    held = await witness.witness.state.held(ORIGIN)
    assert held is not None and (held.size, held.root_hash) == (9, log.root())
    assert [s for s, _ in await witness.witness.state.refused(ORIGIN)] == [422, 422, 422, 422]
    # the honest extension still goes through
    assert (await post(session, witness, honest.request(9)))[0] == 200


async def test_a_proof_from_size_zero_must_be_empty(witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    log = MemoryLog(4)
    status, _, _ = await post(session, witness, AddCheckpoint(0, (digest("x"),), log.note()).encode())
    assert status == 422
    assert await witness.witness.state.held(ORIGIN) is None


async def test_unknown_origin_and_bad_signatures(witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    log = MemoryLog(4)
    other_origin = log.note(origin="other.example/log")
    assert (await post(session, witness, AddCheckpoint(0, (), other_origin).encode()))[0] == 404
    stranger = Ed25519PrivateKey.generate()
    assert (await post(session, witness, AddCheckpoint(0, (), log.note(key=stranger)).encode()))[0] == 403
    # the log's key name and key id, but a signature that does not verify
    note = log.note()
    text, line = note.rsplit("\n\n", 1)
    name, blob = line.removeprefix("\u2014 ").rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    tampered = f"{text}\n\n\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    assert (await post(session, witness, AddCheckpoint(0, (), tampered).encode()))[0] == 403
    assert await witness.witness.state.held(ORIGIN) is None


@pytest.mark.parametrize("body", [
    b"",
    b"old 0\nnot a checkpoint",
    b"old 01\n\n",
    b"new 0\n\n",
    b"old 0\n%%%%\n\n",
    b"old 0\n" + b"".join(base64.b64encode(bytes([i]) * 32) + b"\n" for i in range(64)) + b"\n",
    b"old 0\n\x80\n\n",
])
async def test_malformed_bodies_are_bad_requests(
        witness: RunningWitness, session: aiohttp.ClientSession, body: bytes) -> None:
    note = MemoryLog(2).note().encode()
    status, _, _ = await post(session, witness, body + note if body.endswith(b"\n\n") else body)
    assert status == 400


async def test_racing_submissions_from_one_old_size(witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    log = MemoryLog(5)
    assert (await post(session, witness, log.request(0)))[0] == 200
    log.grow(7)
    results = await asyncio.gather(post(session, witness, log.request(5, 9)), post(session, witness, log.request(5)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 409]
    winner = 9 if results[0][0] == 200 else 12
    loser_body = results[1][2] if winner == 9 else results[0][2]
    assert loser_body == f"{winner}\n"
    held = await witness.witness.state.held(ORIGIN)
    assert held is not None and held.size == winner


async def test_racing_processes_sharing_the_state_file(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Two witness servers over one state file (as two processes would be): per round, of two submissions from
    the same old size, exactly one is cosigned and the held size only grows."""
    config = witness_config(tmp_path)
    log = MemoryLog(1)
    async with running_witness(config) as first, running_witness(config) as second:
        assert (await post(session, first, log.request(0)))[0] == 200
        held = 1
        for _ in range(8):
            log.grow(3)
            a, b = await asyncio.gather(post(session, first, log.request(held, held + 1)),
                                        post(session, second, log.request(held, held + 3)))
            assert sorted([a[0], b[0]]) == [200, 409]
            new = held + 1 if a[0] == 200 else held + 3
            assert (b if a[0] == 200 else a)[2] == f"{new}\n"
            stored = await first.witness.state.held(ORIGIN)
            assert stored is not None and stored.size == new
            held = new
            log.leaves = log.leaves[:held]


async def test_restart_keeps_the_state_and_the_key(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    config = witness_config(tmp_path)
    log = MemoryLog(7)
    async with running_witness(config) as witness:
        assert (await post(session, witness, log.request(0)))[0] == 200
        vkey = witness.witness.vkey
    async with running_witness(config) as witness:
        assert witness.witness.vkey == vkey
        status, content_type, body = await post(session, witness, log.request(0, 3))
        assert (status, content_type, body) == (409, "text/x.tlog.size", "7\n")
        log.grow(2)
        status, _, answer = await post(session, witness, log.request(7))
        assert status == 200 and cosigned(log.note(), answer, vkey)


async def test_state_refuses_to_go_back_even_when_asked_directly(tmp_path: Path) -> None:
    """The compare-and-swap itself: even with a judge that lets everything through, the held size never goes
    back, whichever connection holds it."""
    state = WitnessState(tmp_path / "w.sqlite3")
    other = WitnessState(tmp_path / "w.sqlite3")
    await state.open()
    await other.open()
    try:
        await state.advance(ORIGIN, 5, digest("5"), "n5", lambda held: None)
        await other.advance(ORIGIN, 9, digest("9"), "n9", lambda held: None)
        with pytest.raises(Exception, match="holds size 9"):
            await state.advance(ORIGIN, 4, digest("4"), "n4", lambda held: None)
        held = await state.held(ORIGIN)
        assert held is not None and (held.size, held.root_hash) == (9, digest("9"))
    finally:
        await state.close()
        await other.close()


async def test_the_latest_checkpoint_is_read_back_cosigned(
        witness: RunningWitness, session: aiohttp.ClientSession, config: WitnessConfig) -> None:
    vkey = witness_verifier_key(config, load_witness_key(config.key_file))

    async def read(origin: str | None) -> tuple[int, str]:
        async with session.get(witness.url + "/checkpoint", params={} if origin is None else {"origin": origin}) as r:
            return r.status, await r.text()

    assert (await read(ORIGIN))[0] == 404  # nothing held yet
    assert (await read("another.example/log"))[0] == 404
    assert (await read(None))[0] == 400
    log = MemoryLog(7)
    assert (await post(session, witness, log.request(0)))[0] == 200
    status, note = await read(ORIGIN)
    assert status == 200
    checkpoint = cp.open_checkpoint(note, [LOG_VKEY])
    assert (checkpoint.size, checkpoint.root_hash) == (7, log.root())
    (cosignature,) = cp.verify_cosignatures(note, [vkey])
    assert cosignature.name == "cndp.ma/witness" and cosignature.timestamp > 1_700_000_000
    # a rollback refused leaves what it holds, and what it answers, unchanged
    assert (await post(session, witness, MemoryLog(3).request(0)))[0] == 409
    assert cp.open_checkpoint((await read(ORIGIN))[1], [LOG_VKEY]).size == 7


async def test_the_checkpoint_read_back_carries_only_signatures_the_witness_checked(
        witness: RunningWitness, session: aiohttp.ClientSession) -> None:
    """A line by a key the witness does not know is ignored when cosigning (signed-note) and not served back:
    a verifier trusting that other key would otherwise refuse the whole note the witness vouches for."""
    log = MemoryLog(4)
    junk = cp.NoteSignature("other.example/w", b"\x01\x02\x03\x04", bytes(64))
    note = cp.add_signatures(log.note(), [junk])
    assert (await post(session, witness, AddCheckpoint(0, (), note).encode()))[0] == 200
    async with session.get(witness.url + "/checkpoint", params={"origin": ORIGIN}) as response:
        served = await response.text()
    assert junk.line() not in served
    assert [s.name for s in cp.parse_note(served).signatures] == [ORIGIN, "cndp.ma/witness"]
    assert cp.open_checkpoint(served, [LOG_VKEY]).size == 4
