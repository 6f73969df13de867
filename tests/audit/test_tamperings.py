"""The 13 tamperings of the access log (issue 9, "Done when"), each caught — on SQLite and on PostgreSQL — by
`anss-gateway audit verify`, the running gateway or the witness, naming what it found:

 1. alter an entry                                   — verify: the entry, "altered"
 2. alter it and recompute its leaf hash             — verify: the entry, "rewritten here"
 3. delete an entry                                  — verify: "entry N is missing"
 4. swap two entries                                 — verify: the first, "moved"
 5. insert an entry                                  — verify: the entry, "inserted"
 6. truncate the tail, keeping the heads             — verify: "truncated", the head that covers it
 7. truncate the tail and delete the heads above     — verify: the witness's, the high water's size; the cadence
 8. delete every signed head                         — verify: "no signed tree head"
 9. rewrite the log consistently, without heads      — verify: the witness's root; the cadence
10. the same, re-signed with a planted "retired" key — verify: the key is not trusted (production); the high water
11. launder by restart: the forged file in place     — the gateway refuses (high water, then witness: 503
    and the gateway started                            access_log_corrupt); verify: the witness's root
12. live truncation: the last 20 entries and their   — the running gateway's guard (503 access_log_corrupt), the
    heads cut under a running gateway                  witness never cosigns again; verify: the witness's size
13. a forked head of an existing size                — verify: the witness's root; the witness refuses it (409);
                                                       the guard refuses it

The static log (1-10, 13): 160 entries of a gateway configured for production (``tamper_support``), heads of
size 100 and 150 published as the running gateway does — high water, archive, and a real witness on loopback
that cosigned both — and 10 entries after. 11 and 12 run the whole gateway (``tests.gateway.conftest``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from gateway.audit import AccessLog, AccessLogCorrupt, log_id_for
from gateway.audit import checkpoint as cp
from gateway.audit import merkle as m
from gateway.audit.witness.client import QuorumNotMet, WitnessClient, WitnessEndpoint, WitnessOutcome
from gateway.audit.witness.guard import load_checkpoint_key
from gateway.audit.witness.service import RunningWitness
from gateway.config.settings import DSN_ENV, Settings, load
from gateway.config.witnesses import WitnessingSettings, WitnessSetting
from gateway.crypto import keys
from gateway.web.state import RUNTIME
from tests.audit.pg_support import fresh_schema
from tests.audit.tamper_support import WITNESS, ProductionLog, Tamperer, later, record, verify, witness_of
from tests.audit.witness.support import ask_verification, held_size
from tests.gateway.conftest import Stack, build_stack

BACKENDS = ["sqlite", "postgres"]
LogFactory = Callable[[str, bool], ProductionLog]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_log(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LogFactory]:
    """``new_log(name, configured)``: an empty log of the test's backend; ``configured``: the commands' from now on."""
    with ExitStack() as cleanup:

        def make(name: str, configured: bool = True) -> ProductionLog:
            target = cleanup.enter_context(fresh_schema()) if backend == "postgres" else None
            made = ProductionLog(tmp_path / name, target)
            if configured:
                for variable, value in made.environment.items():
                    monkeypatch.setenv(variable, value)
            return made

        yield make


@dataclass
class World:
    log: ProductionLog
    witness: RunningWitness
    client: WitnessClient
    tamper: Tamperer

    @property
    def witness_args(self) -> tuple[str, str, str]:
        return "--witness", self.witness.url, self.witness.witness.vkey.encode()


@pytest.fixture
async def world(new_log: LogFactory) -> AsyncIterator[World]:
    log = new_log("gateway", True)
    async with log.witness() as witness, aiohttp.ClientSession() as session:
        client = WitnessClient(session, [WitnessEndpoint(witness.url, witness.witness.vkey)], 1)
        await log.build(client)
        held = await witness.witness.state.held(log.origin)
        assert held is not None and held.size == 150
        yield World(log, witness, client, Tamperer(log.settings))


async def broken(capsys: pytest.CaptureFixture[str], *args: str, at: int | None = None) -> str:
    code, out = await verify(capsys, *args)
    assert code == 1, out
    assert out.startswith("access log BROKEN" + (f" at entry {at}: " if at is not None else ": ")), out
    assert len(out.strip().splitlines()) == 1, out
    return out


async def forge(new_log: LogFactory, *, without: str = "CASE-0003", heads: tuple[int, ...] = (),
                key: keys.SigningKey | None = None) -> ProductionLog:
    """Another log of the same gateway, written elsewhere by the real store: the entries of case ``without``
    left out, and heads of ``heads`` sizes signed by ``key``."""
    forged = new_log("forged", False)

    async def fill(store: AccessLog) -> None:
        for i in range(160):
            if record(i).case_ref != without:
                await store.append(record(i))
                if key is not None and await store.count() in heads:
                    assert await store.issue_tree_head(key, forged.log_id) is not None

    await forged.run(fill)
    return forged


# --- the baseline ---------------------------------------------------------------------------------------------------


async def test_the_untampered_log_verifies_against_every_checkpoint(world: World,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await verify(capsys, *world.witness_args)
    assert code == 0, out
    assert "160 entries (0 pruned), 2 signed tree heads verified against 1 known keys (configured key files" in out
    assert f"agrees with the checkpoint cosigned by witness {WITNESS}: size 150" in out
    assert "agrees with the high-water checkpoint" in out and "agrees with the archived checkpoint" in out
    # ... and its 10 unsigned entries are only fine while a head for them is not yet due
    out = await broken(capsys, "--now", later(3600))
    assert "10 entries follow it" in out and "older than the cadence allows" in out


# --- 1-6: the database's own consistency ------------------------------------------------------------------------------


async def test_01_an_altered_entry(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.sql(f"UPDATE access_log SET entry = {world.tamper.replace('entry', 'req-00037', 'req-99999')} "
                     "WHERE idx = 37")
    assert "altered" in await broken(capsys, *world.witness_args, at=37)


async def test_02_an_altered_entry_with_its_leaf_hash_recomputed(world: World,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    forged = record(37).canonical().replace(b"req-00037", b"req-99999")
    world.tamper.sql(f"UPDATE access_log SET entry = {world.tamper.blob(forged)}, "
                     f"leaf_hash = {world.tamper.blob(m.leaf_hash(forged))} WHERE idx = 37")
    assert "rewritten here" in await broken(capsys, *world.witness_args, at=37)


async def test_03_a_deleted_entry(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.sql("DELETE FROM access_log WHERE idx = 42")
    assert "entry 42 is missing" in await broken(capsys, *world.witness_args, at=42)


async def test_04_swapped_entries(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.sql("UPDATE access_log SET idx = -1 WHERE idx = 20", "UPDATE access_log SET idx = 20 WHERE idx = 90",
                     "UPDATE access_log SET idx = 90 WHERE idx = -1")
    assert "moved" in await broken(capsys, *world.witness_args, at=20)


async def test_05_an_inserted_entry(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    forged = record(999).canonical()
    t = world.tamper
    t.sql("UPDATE access_log SET idx = -idx - 1 WHERE idx >= 50", "UPDATE access_log SET idx = -idx WHERE idx < 0",
          f"INSERT INTO access_log VALUES (50, {t.blob(forged)}, {t.blob(m.leaf_hash(forged))}, "
          "(SELECT tree_root FROM access_log WHERE idx = 51))")
    assert "inserted" in await broken(capsys, *world.witness_args, at=50)


async def test_06_a_truncated_tail_under_its_head(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.truncate(140, heads_above=False)
    out = await broken(capsys, *world.witness_args, at=140)
    assert "truncated after index 139: the signed tree head of size 150" in out


# --- 7-10: what the database alone cannot tell --------------------------------------------------------------------


async def test_07_a_truncated_tail_with_the_heads_above_deleted(world: World,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.truncate(140, heads_above=True)
    out = await broken(capsys, *world.witness_args)
    assert f"fewer than the 150 of the checkpoint cosigned by witness {WITNESS}: entries were removed" in out
    out = await broken(capsys)  # without the witness: the high-water file beside the checkpoint key
    assert "fewer than the 150 of the high-water checkpoint" in out
    world.log.high_water.unlink()  # an intruder who can write the state directory as well ...
    assert "fewer than the 150 of the archived checkpoint" in await broken(capsys)
    world.log.archive.unlink()  # ... leaves the cadence: head 100 was due again within a minute
    assert (await verify(capsys))[0] == 0  # right after the cut, nothing is overdue yet
    out = await broken(capsys, "--now", later(3600))
    assert "the latest signed tree head (size 100" in out and "40 entries follow it" in out


async def test_08_every_signed_head_deleted(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.sql("DELETE FROM tree_heads")
    out = await broken(capsys, *world.witness_args)
    assert "160 entries and no signed tree head: the first, dated 2026-11-23T08:00:00Z" in out


async def test_09_a_consistent_rewrite_without_heads(world: World, new_log: LogFactory,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.put_in_place((await forge(new_log)).settings)  # the 10 entries of CASE-0003 are gone
    out = await broken(capsys, *world.witness_args)
    assert f"the log's tree of size 150 is not the one of the checkpoint cosigned by witness {WITNESS}" in out
    assert "rewritten" in out
    world.log.high_water.unlink()
    world.log.archive.unlink()
    assert "150 entries and no signed tree head" in await broken(capsys)


async def test_a_checkpoint_kept_with_its_head_that_was_rewritten(world: World,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Beyond the thirteen: the checkpoints table the triggers guard (only signature lines may be added). A note
    rewritten with another root no longer carries the log's signature; audit verify names it."""
    other = base64.b64encode(b"\x00" * 32).decode()
    world.tamper.sql(f"UPDATE checkpoints SET note = replace(note, '{_root_line(world, 150)}', '{other}') "
                     "WHERE tree_size = 150")  # (a text column on both stores)
    out = await broken(capsys, *world.witness_args)
    assert "the checkpoint kept with the tree head of size 150 is not signed by the log's checkpoint key" in out


async def test_a_forged_cosignature_added_to_a_kept_checkpoint(world: World,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Adding signature lines is the one change the table allows: a line in the witness's name that it did not
    sign is caught by its key."""
    vkey = world.witness.witness.vkey
    forged = base64.b64encode(vkey.key_id + (1764700000).to_bytes(8, "big") + b"\x01" * 64).decode()
    line = f"\u2014 {vkey.name} {forged}\n"
    world.tamper.sql(f"UPDATE checkpoints SET note = note || '{line}' WHERE tree_size = 100")
    out = await broken(capsys, *world.witness_args)
    assert "a witness's cosignature on the checkpoint of size 100 does not verify" in out


def _root_line(world: World, size: int) -> str:
    """The root hash line of the kept checkpoint of ``size`` (padded standard base64), read back from the log."""
    from gateway.stores.backends import log_location

    stored = dict(log_location(world.log.settings).checkpoints())
    return stored[size].split("\n")[2]


async def test_10_a_consistent_rewrite_resigned_with_a_planted_key(world: World, new_log: LogFactory,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    intruder = keys.generate()
    world.tamper.put_in_place((await forge(new_log, heads=(100, 150), key=intruder)).settings)
    world.tamper.plant_retired_key(intruder)
    out = await broken(capsys, at=0)
    assert "the signed tree head of size 100 does not verify against the gateway's keys" in out
    assert "unknown kid" in out
    # a development gateway (no signing_key_file) trusts its key store, planted key included: the checkpoints
    # outside the database still tell
    monkeypatch.delenv("ANSS_GATEWAY_SIGNING_KEY_FILE")
    out = await broken(capsys)
    assert "the log's tree of size 150 is not the one of the high-water checkpoint" in out


async def test_13_a_forked_head_of_an_existing_size(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.tamper.truncate(140, heads_above=True)
    log = world.log

    async def fork(store: AccessLog) -> m.SignedTreeHead:  # a gateway without its guard, as before issue 9
        for i in range(10):
            await store.append(record(1000 + i))
        head = await store.issue_tree_head(log.key, log.log_id)
        assert head is not None and head.head.tree_size == 150
        return head

    forked = await log.run(fork)
    out = await broken(capsys, *world.witness_args)
    assert f"the log's tree of size 150 is not the one of the checkpoint cosigned by witness {WITNESS}" in out
    assert "a second root was signed for that size (a fork)" in out
    # the witness refuses the forked checkpoint (and keeps it as evidence) ...
    note = cp.sign_checkpoint(cp.Checkpoint(log.origin, 150, forked.head.root_hash), log.origin, log.checkpoint_key)

    async def submit(store: AccessLog) -> WitnessOutcome:
        with pytest.raises(QuorumNotMet) as refused:
            await world.client.submit(note, store)
        return refused.value.witnessed.outcomes[0]

    outcome = await log.run(submit)
    assert outcome.inconsistent and "another checkpoint of size 150" in (outcome.error or ""), outcome
    assert (409, "same size as the held checkpoint, another root hash") in \
        await world.witness.witness.state.refused(log.origin)
    # ... and so does the gateway's guard, before it would append or sign

    async def guarded(store: AccessLog) -> None:
        guard = log.guard(store)
        try:
            with pytest.raises(AccessLogCorrupt, match="tree of size 150 is not the high-water checkpoint's"):
                await guard.check()
        finally:
            await guard.archive.close()

    await log.run(guarded)


# --- 11-12: a running gateway --------------------------------------------------------------------------------------


@dataclass
class Deployment:
    """The whole gateway (tests.gateway.conftest) on the test's backend, its witness, and what verify sees."""

    tmp_path: Path
    witness: RunningWitness
    settings: Settings  # as the commands load it (the environment the fixture set)
    origin: str
    adjust: Callable[[Settings], Settings]  # what the running gateway is given on top

    def stack(self) -> AbstractAsyncContextManager[Stack]:
        return build_stack(self.tmp_path, self.adjust)


@pytest.fixture
async def deployment(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Deployment]:
    with ExitStack() as cleanup:
        env = {"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state")}
        target = cleanup.enter_context(fresh_schema()) if backend == "postgres" else None
        if target is not None:
            env |= {"ANSS_GATEWAY_STORAGE_BACKEND": "postgres", DSN_ENV: target.dsn,
                    "ANSS_GATEWAY_DATABASE_SCHEMA": target.schema}
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        settings = load(env=env)
        origin = log_id_for(settings.gateway_id)
        vkey = cp.verifier_key(origin, load_checkpoint_key(settings.witnessing.key_path(settings.state_dir)))
        async with witness_of(tmp_path / "witness", origin, vkey) as witness:

            def adjust(s: Settings) -> Settings:
                s = replace(s, tree_head_max_entries=1, witnessing=WitnessingSettings(
                    witnesses=(WitnessSetting(witness.url, witness.witness.vkey),), quorum=1))
                return replace(s, storage_backend="postgres", database=target) if target is not None else s

            yield Deployment(tmp_path, witness, settings, origin, adjust)


async def test_11_laundering_by_restart(deployment: Deployment, new_log: LogFactory,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    async with d.stack() as stack:
        for i in range(3):
            assert (await ask_verification(stack, f"CASE-{i}"))[0] == 200
        await held_size(d.witness, d.origin, 3)
    held = await d.witness.witness.state.held(d.origin)
    assert held is not None
    # a forged log without heads, longer than the real one, written by the real store elsewhere, put in its place
    forged = new_log("forged", False)

    async def fill(store: AccessLog) -> None:
        for i in range(held.size + 3):
            await store.append(record(i, "FORGED"))

    await forged.run(fill)
    tamper = Tamperer(d.adjust(d.settings))
    tamper.put_in_place(forged.settings)
    # started on it: the high water beside the checkpoint key says the log was cut
    async with d.stack() as stack:
        assert await ask_verification(stack, "CASE-AFTER") == (503, "access_log_corrupt")
        guard = stack.gateway.runner.app[RUNTIME].log_guard
        assert guard is not None and guard.corrupt is not None
        assert "is not the high-water checkpoint's: it was rewritten" in guard.corrupt, guard.corrupt
    # the intruder deletes the high water and the archive too: the witness still holds the real checkpoint
    d.settings.witnessing.high_water_path(d.settings.state_dir).unlink()
    (d.settings.state_dir / "checkpoints.sqlite3").unlink(missing_ok=True)  # (the last one may still be saving)
    async with d.stack() as stack:
        guard = stack.gateway.runner.app[RUNTIME].log_guard
        assert guard is not None
        for i in range(600):  # the first head over the forgery is refused by the witness
            if guard.corrupt is not None:
                break
            await ask_verification(stack, f"CASE-LAUNDERED-{i}")
            await asyncio.sleep(0.05)
        assert guard.corrupt is not None and f"witness {WITNESS} found the checkpoint of size" in guard.corrupt
        assert "inconsistent with the one it holds: the log was rewritten" in guard.corrupt, guard.corrupt
        assert await ask_verification(stack, "CASE-REFUSED") == (503, "access_log_corrupt")
    after = await d.witness.witness.state.held(d.origin)
    assert after is not None and (after.size, after.root_hash) == (held.size, held.root_hash)
    out = await broken(capsys, "--witness", d.witness.url, d.witness.witness.vkey.encode())
    assert f"the log's tree of size {held.size} is not the one of the checkpoint cosigned by witness {WITNESS} " \
           "(another root): the log was rewritten" in out


async def test_12_live_truncation_under_a_running_gateway(deployment: Deployment,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    async with d.stack() as stack:
        for i in range(25):
            assert (await ask_verification(stack, f"CASE-{i}"))[0] == 200
        size = await held_size(d.witness, d.origin, 25)
        tamper = Tamperer(d.adjust(d.settings))
        tamper.truncate(size - 20, heads_above=True)  # the last 20 entries, their heads and subtrees
        guard = stack.gateway.runner.app[RUNTIME].log_guard
        assert guard is not None
        for i in range(600):  # each answered request is a new entry: the next round checks before signing
            if guard.corrupt is not None:
                break
            await ask_verification(stack, f"CASE-LIVE-{i}")
            await asyncio.sleep(0.05)
        assert guard.corrupt is not None, "the cut went unnoticed"
        assert f"fewer than the {size} of the high-water checkpoint: entries were removed" in guard.corrupt
        assert await ask_verification(stack, "CASE-REFUSED") == (503, "access_log_corrupt")
        held = await d.witness.witness.state.held(d.origin)
        assert held is not None and held.size == size  # no second root was signed for any size
    out = await broken(capsys, "--witness", d.witness.url, d.witness.witness.vkey.encode())
    assert f"fewer than the {size} of the checkpoint cosigned by witness {WITNESS}: entries were removed" in out
