"""The gateway's side of C2SP ``tlog-witness``: submit a signed checkpoint to every configured witness, collect
their cosignatures, check a quorum.

For each witness the client remembers the last size it acknowledged (``acknowledged``; seed it from what was
stored). It sends ``old <that size>`` with the consistency proof from it (``ConsistencySource``, e.g. the access
log); a 409 carrying another size is retried from that size (the witness restarted, another replica submitted,
or the client never knew), up to ``MAX_ATTEMPTS`` times. A witness holding a size *above* the checkpoint's has
cosigned a larger tree of this log than the log now has — the log was cut: ``WitnessOutcome.ahead`` says so;
one that holds a checkpoint this one does not extend (a 409 at the same size, with or without the size, a 422) sets
``WitnessOutcome.inconsistent``: the log was rewritten. The caller must treat both as a corrupt log.
Cosignature lines are kept only when they are by the configured witness key and verify
(``checkpoint.verify_cosignatures``); unknown lines are ignored, as the protocol requires. Witnesses are asked
concurrently over the caller's shared aiohttp session, each with its own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog

from gateway.audit.checkpoint import (
    COSIGNATURE_V1,
    CheckpointError,
    NoteSignature,
    VerifierKey,
    add_signatures,
    parse_checkpoint,
    parse_note,
    verify_cosignatures,
)
from gateway.audit.witness.protocol import SIZE_CONTENT_TYPE, AddCheckpoint, parse_cosignatures, parse_size

log = structlog.get_logger("gateway.audit.witness")
MAX_ATTEMPTS = 3
MAX_ANSWER_BYTES = 16 * 1024


class ConsistencySource(Protocol):
    """Where consistency proofs come from (the ``AccessLog`` protocol has this method)."""

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """A configured witness: its submission prefix (``<url>/add-checkpoint``) and its verifier key (0x04)."""

    url: str
    vkey: VerifierKey

    def __post_init__(self) -> None:
        if self.vkey.key_type != COSIGNATURE_V1:
            raise ValueError(f"witness {self.vkey.name}: its verifier key must be a cosignature key (type 0x04)")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"witness {self.vkey.name}: url must be http(s)")


@dataclass(frozen=True, slots=True)
class WitnessOutcome:
    """What one witness answered: its verified cosignature lines, or why there are none."""

    witness: str
    url: str
    cosignatures: tuple[NoteSignature, ...] = ()
    acknowledged_size: int | None = None  # the size it holds, as far as the client knows
    error: str | None = None
    ahead: int | None = None  # the witness holds this size, larger than the checkpoint's
    inconsistent: bool = False  # the witness holds a checkpoint this one does not extend (409 fork, 422)

    @property
    def cosigned(self) -> bool:
        return bool(self.cosignatures)


@dataclass(frozen=True, slots=True)
class Witnessed:
    """The checkpoint with every verified cosignature appended, and each witness's outcome."""

    note: str
    outcomes: tuple[WitnessOutcome, ...]
    quorum: int

    @property
    def cosigners(self) -> int:
        return sum(1 for o in self.outcomes if o.cosigned)

    @property
    def quorum_met(self) -> bool:
        return self.cosigners >= self.quorum


class QuorumNotMet(RuntimeError):
    """Fewer witnesses than the quorum cosigned; ``witnessed`` holds what was gathered."""

    def __init__(self, witnessed: Witnessed) -> None:
        failed = "; ".join(f"{o.witness}: {o.error}" for o in witnessed.outcomes if not o.cosigned)
        super().__init__(f"{witnessed.cosigners} of {witnessed.quorum} witness cosignatures ({failed})")
        self.witnessed = witnessed


class WitnessClient:
    """Submits checkpoints to ``witnesses``; ``quorum`` of them must cosign (see the module docstring)."""

    def __init__(self, session: aiohttp.ClientSession, witnesses: Sequence[WitnessEndpoint], quorum: int, *,
                 timeout_s: float = 5.0, acknowledged: Mapping[str, int] | None = None) -> None:
        if not 0 <= quorum <= len(witnesses):
            raise ValueError("the quorum must be between 0 and the number of witnesses")
        names = [w.vkey.name for w in witnesses]
        if len(set(names)) != len(names):
            raise ValueError("two witnesses share a key name")
        self.session, self.witnesses, self.quorum = session, tuple(witnesses), quorum
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.acknowledged: dict[str, int] = dict(acknowledged or {})  # witness name → size it holds

    async def submit(self, note: str, proofs: ConsistencySource) -> Witnessed:
        """Every witness's outcome for the signed checkpoint ``note``, cosignatures appended; ``QuorumNotMet``
        when too few cosigned."""
        checkpoint = parse_checkpoint(parse_note(note).text)
        outcomes = await asyncio.gather(*(self._one(w, note, checkpoint.size, proofs) for w in self.witnesses))
        lines = [line for o in outcomes for line in o.cosignatures]
        witnessed = Witnessed(add_signatures(note, lines) if lines else note, tuple(outcomes), self.quorum)
        for o in outcomes:
            if o.ahead is not None:
                log.critical("witness_holds_larger_checkpoint", witness=o.witness, witness_size=o.ahead,
                             size=checkpoint.size)
            elif not o.cosigned:
                log.warning("witness_did_not_cosign", witness=o.witness, size=checkpoint.size, error=o.error)
        if not witnessed.quorum_met:
            raise QuorumNotMet(witnessed)
        return witnessed

    async def _one(self, witness: WitnessEndpoint, note: str, size: int, proofs: ConsistencySource) -> WitnessOutcome:
        name, url = witness.vkey.name, witness.url.rstrip("/") + "/add-checkpoint"
        old = min(self.acknowledged.get(name, 0), size)
        error = "no attempt"
        for _ in range(MAX_ATTEMPTS):
            try:
                proof = await proofs.consistency_proof(old, size) if old else []
                body = AddCheckpoint(old, tuple(proof), note).encode()
                async with self.session.post(url, data=body, timeout=self.timeout,
                                             headers={"Content-Type": "text/plain; charset=utf-8"}) as response:
                    answer = await response.content.read(MAX_ANSWER_BYTES + 1)
                    status, content_type = response.status, response.content_type
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return WitnessOutcome(name, witness.url, error=f"unreachable: {type(exc).__name__}")
            except ValueError as exc:  # no proof for these sizes
                return WitnessOutcome(name, witness.url, error=f"no consistency proof from {old}: {exc}")
            if len(answer) > MAX_ANSWER_BYTES:
                return WitnessOutcome(name, witness.url, error="answer too large")
            if status == 200:
                return self._cosigned(witness, note, size, answer)
            if status == 409 and content_type == SIZE_CONTENT_TYPE:
                try:
                    held = parse_size(answer)
                except ValueError:
                    return WitnessOutcome(name, witness.url, error="409 with a malformed size")
                self.acknowledged[name] = held
                if held > size:
                    return WitnessOutcome(name, witness.url, acknowledged_size=held, ahead=held,
                                          error=f"the witness holds size {held}, above this checkpoint's {size}")
                if held == old:  # same size, another root: the witness holds a fork of this log
                    return WitnessOutcome(name, witness.url, acknowledged_size=held, inconsistent=True,
                                          error=f"the witness holds another checkpoint of size {held}")
                old, error = held, f"409: the witness holds size {held}"
                continue
            # tlog-witness: a 409 without a size answers "old = this size, another root" (a fork) — the only 409
            # it defines with no body; so does a 422 (the proof from what the witness holds does not verify)
            forked = status == 422 or (status == 409 and old == size)
            return WitnessOutcome(name, witness.url, acknowledged_size=self.acknowledged.get(name),
                                  inconsistent=forked,
                                  error=f"HTTP {status}: {answer[:200].decode('utf-8', 'replace').strip()}")
        return WitnessOutcome(name, witness.url, acknowledged_size=self.acknowledged.get(name),
                              error=f"gave up after {MAX_ATTEMPTS} attempts ({error})")

    def _cosigned(self, witness: WitnessEndpoint, note: str, size: int, answer: bytes) -> WitnessOutcome:
        name, vkey = witness.vkey.name, witness.vkey
        try:
            ours = tuple(s for s in parse_cosignatures(answer) if (s.name, s.key_id) == (vkey.name, vkey.key_id))
            if not ours or not verify_cosignatures(add_signatures(note, ours), [vkey]):
                raise CheckpointError("no cosignature by the configured witness key")
        except CheckpointError as exc:
            return WitnessOutcome(name, witness.url, error=f"bad cosignature: {exc}")
        self.acknowledged[name] = size
        return WitnessOutcome(name, witness.url, cosignatures=ours, acknowledged_size=size)
