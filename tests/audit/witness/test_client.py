"""The gateway's witness client against real witness servers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import checkpoint as cp
from gateway.audit.witness.client import QuorumNotMet, WitnessClient, WitnessEndpoint
from gateway.audit.witness.service import RunningWitness
from tests.audit.witness.support import LOG_VKEY, ORIGIN, MemoryLog, running_witness, witness_config


@pytest.fixture
async def witnesses(tmp_path: Path) -> AsyncIterator[list[RunningWitness]]:
    async with AsyncExitStack() as stack:
        found = []
        for name in ("cndp.ma/witness", "dgssi.ma/witness"):
            directory = tmp_path / name.split(".")[0]
            directory.mkdir()
            found.append(await stack.enter_async_context(running_witness(witness_config(directory, name))))
        yield found


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def endpoints(witnesses: list[RunningWitness]) -> list[WitnessEndpoint]:
    return [WitnessEndpoint(w.url, w.witness.vkey) for w in witnesses]


async def test_checkpoints_are_cosigned_by_every_witness(
        witnesses: list[RunningWitness], session: aiohttp.ClientSession) -> None:
    client = WitnessClient(session, endpoints(witnesses), quorum=2)
    log = MemoryLog(5)
    for grow in (0, 4, 0, 11):  # the first checkpoint, an extension, the same again, a larger extension
        log.grow(grow)
        witnessed = await client.submit(log.note(), log)
        assert witnessed.quorum_met and witnessed.cosigners == 2
        assert cp.open_checkpoint(witnessed.note, [LOG_VKEY]).size == len(log.leaves)
        names = {c.name for c in cp.verify_cosignatures(witnessed.note, [w.witness.vkey for w in witnesses])}
        assert names == {"cndp.ma/witness", "dgssi.ma/witness"}
        assert client.acknowledged == {"cndp.ma/witness": len(log.leaves), "dgssi.ma/witness": len(log.leaves)}
    for w in witnesses:
        held = await w.witness.state.held(ORIGIN)
        assert held is not None and held.size == 20


async def test_a_client_that_forgot_follows_the_size_the_witness_reports(
        witnesses: list[RunningWitness], session: aiohttp.ClientSession) -> None:
    log = MemoryLog(6)
    await WitnessClient(session, endpoints(witnesses), quorum=2).submit(log.note(), log)
    log.grow(3)
    fresh = WitnessClient(session, endpoints(witnesses), quorum=2)  # a restarted gateway, nothing remembered
    witnessed = await fresh.submit(log.note(), log)
    assert witnessed.cosigners == 2
    stale = WitnessClient(session, endpoints(witnesses), quorum=2, acknowledged={"cndp.ma/witness": 2})
    log.grow(1)
    assert (await stale.submit(log.note(), log)).cosigners == 2


async def test_a_truncated_log_finds_the_witnesses_ahead(
        witnesses: list[RunningWitness], session: aiohttp.ClientSession) -> None:
    log = MemoryLog(12)
    await WitnessClient(session, endpoints(witnesses), quorum=2).submit(log.note(), log)
    cut = MemoryLog(9)  # the same first 9 entries, the tail removed
    with pytest.raises(QuorumNotMet) as caught:
        await WitnessClient(session, endpoints(witnesses), quorum=1).submit(cut.note(), cut)
    assert [o.ahead for o in caught.value.witnessed.outcomes] == [12, 12]
    assert caught.value.witnessed.note == cut.note()


async def test_a_rewritten_log_is_not_cosigned(witnesses: list[RunningWitness], session: aiohttp.ClientSession) -> None:
    log = MemoryLog(8)
    client = WitnessClient(session, endpoints(witnesses), quorum=2)
    await client.submit(log.note(), log)
    rewritten = log.fork(3, "b").grow(2)
    with pytest.raises(QuorumNotMet, match="0 of 2") as caught:
        await client.submit(rewritten.note(), rewritten)
    assert all("HTTP 422" in (o.error or "") and o.inconsistent for o in caught.value.witnessed.outcomes)
    same_size = log.fork(3, "b")
    with pytest.raises(QuorumNotMet) as caught:
        await WitnessClient(session, endpoints(witnesses), quorum=1,
                            acknowledged={"cndp.ma/witness": 8, "dgssi.ma/witness": 8}).submit(
            same_size.note(), same_size)
    assert all("another checkpoint of size 8" in (o.error or "") and o.inconsistent
               for o in caught.value.witnessed.outcomes)


async def test_quorum_with_an_unreachable_witness_and_a_wrong_key(
        witnesses: list[RunningWitness], session: aiohttp.ClientSession, tmp_path: Path) -> None:
    log = MemoryLog(4)
    good, misconfigured = endpoints(witnesses)
    wrong_key = WitnessEndpoint(misconfigured.url, cp.verifier_key(misconfigured.vkey.name,
                                                                   Ed25519PrivateKey.generate(),
                                                                   cp.COSIGNATURE_V1))
    (tmp_path / "gone").mkdir()
    async with running_witness(witness_config(tmp_path / "gone", "gone.example/witness")) as gone:
        unreachable = WitnessEndpoint(gone.url, gone.witness.vkey)  # stopped at the end of this block
    client = WitnessClient(session, [good, wrong_key, unreachable], quorum=1, timeout_s=2)
    witnessed = await client.submit(log.note(), log)
    outcomes = {o.witness: o for o in witnessed.outcomes}
    assert outcomes["cndp.ma/witness"].cosigned
    assert "bad cosignature" in (outcomes["dgssi.ma/witness"].error or "")
    assert "unreachable" in (outcomes["gone.example/witness"].error or "")
    # only the verified cosignature is carried
    assert [s.name for s in cp.parse_note(witnessed.note).signatures] == [ORIGIN, "cndp.ma/witness"]
    with pytest.raises(QuorumNotMet, match="1 of 2"):
        await WitnessClient(session, [good, wrong_key, unreachable], quorum=2, timeout_s=2).submit(log.note(), log)


def test_configuration_mistakes() -> None:
    with pytest.raises(ValueError, match="type 0x04"):
        WitnessEndpoint("http://127.0.0.1:1", LOG_VKEY)
    vkey = cp.verifier_key("w", Ed25519PrivateKey.generate(), cp.COSIGNATURE_V1)
    with pytest.raises(ValueError, match="http"):
        WitnessEndpoint("ftp://x", vkey)
    with pytest.raises(ValueError, match="quorum"):
        WitnessClient(None, [WitnessEndpoint("http://x", vkey)], quorum=2)  # type: ignore[arg-type]


async def test_a_fork_reported_without_a_size_is_a_fork(session: aiohttp.ClientSession) -> None:
    """tlog-witness gives a body only to the stale-size 409: another implementation may answer the same-size fork
    with a bare 409, which must still mark the log inconsistent; a bare 409 to an extension is only an error."""
    async def bare_conflict(request: web.Request) -> web.Response:
        return web.Response(status=409, text="root hash mismatch\n")

    app = web.Application()
    app.router.add_post("/add-checkpoint", bare_conflict)
    async with TestServer(app, host="127.0.0.1") as server:
        vkey = cp.verifier_key("other.example/witness", Ed25519PrivateKey.generate(), cp.COSIGNATURE_V1)
        stub = WitnessEndpoint(str(server.make_url("")).rstrip("/"), vkey)
        log = MemoryLog(5)
        with pytest.raises(QuorumNotMet) as caught:
            await WitnessClient(session, [stub], quorum=1, acknowledged={vkey.name: 5}).submit(log.note(), log)
        (outcome,) = caught.value.witnessed.outcomes
        assert outcome.inconsistent and "HTTP 409" in (outcome.error or "")
        with pytest.raises(QuorumNotMet) as caught:
            await WitnessClient(session, [stub], quorum=1, acknowledged={vkey.name: 3}).submit(log.note(), log)
        (outcome,) = caught.value.witnessed.outcomes
        assert not outcome.inconsistent and "HTTP 409" in (outcome.error or "")
