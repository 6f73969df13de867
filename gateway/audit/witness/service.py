"""The witness service: judging ``add-checkpoint`` submissions, cosigning, and the aiohttp app serving them.

``Witness.add_checkpoint`` applies C2SP ``tlog-witness`` in the spec's order: a malformed body is 400; an origin
it does not witness 404; a checkpoint without a valid signature by one of that log's configured keys 403; an old
size above the checkpoint's 400. Then, atomically with the save (``WitnessState.advance``): an old size other than
the one it holds is 409 with its size (``text/x.tlog.size``); the same size with another root is 409 (a fork); a
consistency proof that does not verify from the held root — or one sent from size 0 — is 422. Otherwise it holds
the new checkpoint and answers 200 with its cosignature (``checkpoint.cosign``, type 0x04, the current time).
Refused submissions that the log did sign are kept as evidence and logged at critical level.

``GET /checkpoint?origin=<origin>`` (ours, not in the protocol, which has no read endpoint) answers the latest
checkpoint held for a log: the note as submitted with the log's signatures that verified (a line by any other
key is dropped: the witness vouches for nothing it did not check) and a fresh cosignature by this witness
appended (its time is when it was read), so that a verifier can check a local log against what the witness holds
(``anss-gateway audit verify``). 400 without an origin, 404 for an origin it does not witness or holds nothing of.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    Note,
    add_signatures,
    cosign,
    open_note,
    parse_checkpoint,
    parse_note,
)
from gateway.audit.merkle import EMPTY_ROOT, verify_consistency
from gateway.audit.witness.config import WitnessConfig, witness_verifier_key
from gateway.audit.witness.protocol import (
    COSIGNATURE_CONTENT_TYPE,
    MAX_BODY_BYTES,
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    WitnessRefusal,
    encode_cosignatures,
    encode_size,
    parse_add_checkpoint,
)
from gateway.audit.witness.state import HeldCheckpoint, StaleSize, WitnessState

log = structlog.get_logger("gateway.witness")


class Witness:
    """One witness: its configuration, its key and its state (opened by the caller)."""

    def __init__(self, config: WitnessConfig, key: Ed25519PrivateKey, state: WitnessState, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.key, self.state, self.clock = config, key, state, clock
        self.vkey = witness_verifier_key(config, key)

    async def add_checkpoint(self, body: bytes) -> bytes:
        """The cosignature lines for a submission, or ``WitnessRefusal`` with the protocol's status."""
        request = parse_add_checkpoint(body)
        try:
            text = parse_note(request.note).text
            checkpoint = parse_checkpoint(text)
        except CheckpointError as exc:
            raise WitnessRefusal(400, f"not a checkpoint note: {exc}") from exc
        witnessed = self.config.log(checkpoint.origin)
        if witnessed is None:
            raise WitnessRefusal(404, "unknown log origin")
        try:
            opened, verified = open_note(request.note, witnessed.vkeys)
        except CheckpointError as exc:
            raise WitnessRefusal(403, f"no valid signature by the log: {exc}") from exc
        held_note = Note(opened.text, verified).render()  # kept and served: the log's verified signatures only
        if request.old_size > checkpoint.size:
            raise WitnessRefusal(400, "the old size is larger than the checkpoint's")
        try:
            await self.state.advance(checkpoint.origin, checkpoint.size, checkpoint.root_hash, held_note,
                                     lambda held: judge(held, request, checkpoint))
        except StaleSize as exc:
            raise WitnessRefusal(409, "the held size changed meanwhile", size=exc.size) from exc
        except WitnessRefusal as refusal:
            if refusal.size is None or (refusal.status == 409 and refusal.size == request.old_size):
                log.critical("witness_refused_signed_checkpoint", origin=checkpoint.origin, size=checkpoint.size,
                             old_size=request.old_size, status=refusal.status, reason=refusal.reason)
                await self.state.record_refused(checkpoint.origin, refusal.status, refusal.reason,
                                                body.decode("utf-8"))
            raise
        timestamp = int(self.clock())
        log.info("witness_cosigned", origin=checkpoint.origin, size=checkpoint.size, old_size=request.old_size)
        return encode_cosignatures([cosign(text, self.config.name, self.key, timestamp)])


    async def latest(self, origin: str) -> str | None:
        """The held checkpoint of ``origin`` with this witness's cosignature appended now; ``None`` if none."""
        if self.config.log(origin) is None:
            return None
        held = await self.state.held(origin)
        if held is None:
            return None
        text = parse_note(held.note).text
        return add_signatures(held.note, [cosign(text, self.config.name, self.key, int(self.clock()))])


WITNESS_KEY = web.AppKey("witness", Witness)


def judge(held: HeldCheckpoint | None, request: AddCheckpoint, checkpoint: Checkpoint) -> None:
    """Raise the refusal ``tlog-witness`` prescribes unless ``checkpoint`` extends ``held`` by ``request.proof``."""
    held_size, held_root = (held.size, held.root_hash) if held is not None else (0, EMPTY_ROOT)
    if request.old_size != held_size:
        raise WitnessRefusal(409, f"the witness holds size {held_size}", size=held_size)
    if request.old_size == checkpoint.size and checkpoint.root_hash != held_root:
        raise WitnessRefusal(409, "same size as the held checkpoint, another root hash", size=held_size)
    if request.old_size == 0:
        if request.proof:
            raise WitnessRefusal(422, "a consistency proof from size 0 must be empty")
        return
    if not verify_consistency(request.old_size, checkpoint.size, held_root, checkpoint.root_hash, request.proof):
        raise WitnessRefusal(422, "the consistency proof does not verify")


async def _add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS_KEY]
    body = await request.read()
    try:
        lines = await witness.add_checkpoint(body)
    except WitnessRefusal as refusal:
        if refusal.status == 409 and refusal.size is not None:
            return web.Response(status=409, body=encode_size(refusal.size), content_type=SIZE_CONTENT_TYPE)
        log.info("witness_refused", status=refusal.status, reason=refusal.reason)
        return web.Response(status=refusal.status, text=refusal.reason + "\n")
    return web.Response(status=200, body=lines, headers={"Content-Type": COSIGNATURE_CONTENT_TYPE})


async def _checkpoint(request: web.Request) -> web.Response:
    origin = request.query.get("origin", "")
    if not origin:
        return web.Response(status=400, text="the query parameter `origin` is required\n")
    note = await request.app[WITNESS_KEY].latest(origin)
    if note is None:
        return web.Response(status=404, text="no checkpoint held for this origin\n")
    return web.Response(status=200, body=note.encode("utf-8"), headers={
        "Content-Type": COSIGNATURE_CONTENT_TYPE, "Cache-Control": "no-store"})


async def _verifier_key(request: web.Request) -> web.Response:
    return web.Response(text=request.app[WITNESS_KEY].vkey.encode() + "\n")


def witness_app(witness: Witness) -> web.Application:
    """``POST /add-checkpoint`` (the protocol), ``GET /checkpoint?origin=`` (the latest held checkpoint, cosigned)
    and ``GET /`` (the witness's verifier key, as text)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[WITNESS_KEY] = witness
    app.router.add_post("/add-checkpoint", _add_checkpoint)
    app.router.add_get("/checkpoint", _checkpoint)
    app.router.add_get("/", _verifier_key)
    return app


@dataclass(frozen=True)
class RunningWitness:
    url: str
    witness: Witness


@asynccontextmanager
async def witness_running(config: WitnessConfig, key: Ed25519PrivateKey, *, port: int | None = None,
                          clock: Callable[[], float] = time.time) -> AsyncIterator[RunningWitness]:
    """The witness listening on ``config.host`` (``port`` overrides the configured one; 0 picks a free one)."""
    state = WitnessState(config.state_file, clock=clock)
    await state.open()
    try:
        witness = Witness(config, key, state, clock=clock)
        runner = web.AppRunner(witness_app(witness), access_log=None, shutdown_timeout=5)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port if port is None else port).start()
            host, bound = runner.addresses[0][:2]
            host = f"[{host}]" if ":" in host else host
            yield RunningWitness(f"http://{host}:{bound}", witness)
        finally:
            await runner.cleanup()
    finally:
        await state.close()


async def serve(config: WitnessConfig, key: Ed25519PrivateKey, stop: asyncio.Event) -> None:
    """Run the witness until ``stop`` is set."""
    async with witness_running(config, key) as running:
        log.info("witness_listening", url=running.url, vkey=running.witness.vkey.encode(),
                 logs=[entry.origin for entry in config.logs])
        await stop.wait()
