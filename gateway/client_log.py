"""The bundled client's watch over the gateway's access log: every answer's ``Log-Checkpoint`` header is checked
against the largest checkpoint the client has seen of that log, and a fork is reported.

``LogWatch.observe(header, proofs)``:

1. decodes the header (base64 of a C2SP signed note) and verifies the note against the gateway's checkpoint
   verifier key (``anss-gateway witness log-key`` prints it; the operator hands it over on an authenticated
   channel) — else ``LogCheckpointInvalid``;
2. compares it with what the state file holds for that log (the largest checkpoint seen, and the root of every
   size seen, up to ``MAX_ROOTS``):

   - nothing held: trusted on first use, kept;
   - the same size: the root must be the one held (cosignatures may differ: the note with more is kept);
   - a size seen before: the root must be the one seen;
   - a larger size: ``PROOF(held, shown)`` from ``GET /log/consistency`` must verify from the held root to the
     shown one; the shown checkpoint becomes the largest;
   - a smaller size (a lagging replica, say): ``PROOF(shown, held)`` must verify from the shown root to the
     held one — and a gateway that no longer holds as many entries as it showed before cannot give it;

   any failure is ``LogForked`` naming both checkpoints; the state file is then left as it was. A proof the
   gateway cannot give for another reason (unreachable, 429, 503) is ``ProofUnavailable``: nothing is decided.

The state file (JSON, replaced atomically; docs/merkle-log.md section 14)::

    {"format": "anss-client-checkpoints-v1",
     "logs": {"<verifier key name>+<key id>": {"note": "<largest signed note>", "roots": {"<size>": "<base64>"}}}}

Its default place is ``$XDG_STATE_HOME/anss-gateway/checkpoints.json`` (``~/.local/state/…`` without the
variable); ``ANSS_GATEWAY_CLIENT_STATE`` or ``--checkpoint-state`` name another. One file serves many gateways.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.checkpoint import Checkpoint, VerifierKey, open_checkpoint, parse_note
from gateway.audit.merkle import verify_consistency

STATE_FORMAT = "anss-client-checkpoints-v1"
MAX_ROOTS = 10_000  # sizes remembered per log (the smallest are forgotten first)
Proofs = Callable[[int, int], Awaitable[list[bytes]]]

__all__ = ["LogCheckpointInvalid", "LogForked", "LogWatch", "LogWatchError", "ProofUnavailable",
           "default_state_path"]


class LogWatchError(Exception):
    """Something the watch over the gateway's log found; see the subclasses."""


class LogCheckpointInvalid(LogWatchError, ValueError):
    """A ``Log-Checkpoint`` header that is not a checkpoint signed by the gateway's checkpoint key."""


class ProofUnavailable(LogWatchError):
    """The gateway gave no consistency proof (unreachable, rate-limited, not ready): nothing was decided."""


class LogForked(LogWatchError):
    """The gateway showed a checkpoint that cannot be of the same append-only log as one it showed before."""

    def __init__(self, held: Checkpoint, shown: Checkpoint, reason: str, state: Path) -> None:
        super().__init__(f"LOG FORK of {held.origin}: the gateway showed {describe(shown)}, which is not "
                         f"consistent with {describe(held)} held in {state}: {reason}")
        self.held, self.shown, self.reason = held, shown, reason


def describe(cp: Checkpoint) -> str:
    return f"checkpoint size {cp.size} root {base64.b64encode(cp.root_hash).decode('ascii')}"


def default_state_path(env: Mapping[str, str] = os.environ) -> Path:
    """``ANSS_GATEWAY_CLIENT_STATE``, else ``$XDG_STATE_HOME/anss-gateway/checkpoints.json``."""
    if env.get("ANSS_GATEWAY_CLIENT_STATE"):
        return Path(env["ANSS_GATEWAY_CLIENT_STATE"])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "anss-gateway" / "checkpoints.json"


@dataclass(frozen=True, slots=True)
class Held:
    """What the state file holds for one log: the largest note seen and the root of each size seen."""

    note: str
    checkpoint: Checkpoint
    roots: dict[int, bytes]


class LogWatch:
    """Checks ``Log-Checkpoint`` headers of one gateway's log against ``state_path`` (module docstring)."""

    def __init__(self, vkey: VerifierKey, state_path: Path | None = None) -> None:
        self.vkey = vkey
        self.state_path = state_path or default_state_path()
        self.log_key = f"{vkey.name}+{vkey.key_id.hex()}"
        self._lock = asyncio.Lock()
        self._last: str | None = None  # the last header accepted: the same again costs nothing

    async def observe(self, header: str, proofs: Proofs) -> Checkpoint:
        """Check one header (see the module docstring); the checkpoint it carries, once accepted."""
        async with self._lock:
            if header == self._last:
                return self._decode(header)[1]
            note, shown = self._decode(header)
            held = await asyncio.to_thread(self._read)
            if held is not None:
                await self._judge(held, shown, proofs)
            await asyncio.to_thread(self._keep, held, note, shown)
            self._last = header
            return shown

    def _decode(self, header: str) -> tuple[str, Checkpoint]:
        try:
            note = base64.b64decode(header.strip(), validate=True).decode("utf-8")
            checkpoint = open_checkpoint(note, [self.vkey])
        except (ValueError, UnicodeDecodeError) as exc:
            raise LogCheckpointInvalid(f"the Log-Checkpoint header is not a checkpoint signed by {self.log_key}: "
                                       f"{exc}") from exc
        if checkpoint.origin != self.vkey.name:
            raise LogCheckpointInvalid(f"the Log-Checkpoint header is of another log ({checkpoint.origin!r})")
        return note, checkpoint

    async def _judge(self, held: Held, shown: Checkpoint, proofs: Proofs) -> None:
        top = held.checkpoint
        seen = held.roots.get(shown.size)
        if seen is not None:
            if seen != shown.root_hash:
                raise LogForked(top if shown.size == top.size else Checkpoint(top.origin, shown.size, seen), shown,
                                f"another root for size {shown.size}", self.state_path)
            return
        old, new = (top, shown) if shown.size > top.size else (shown, top)
        try:
            proof = await proofs(old.size, new.size)
        except ProofUnavailable as exc:
            if "tree_size_beyond_log" not in str(exc):
                raise
            raise LogForked(top, shown, f"the gateway no longer holds the {new.size} entries it showed ({exc})",
                            self.state_path) from exc
        if not verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof):
            raise LogForked(top, shown, f"the consistency proof from size {old.size} to {new.size} does not verify",
                            self.state_path)

    # --- the state file (blocking: run off the event loop) ---------------------------------------------------------

    def _document(self) -> dict[str, Any]:
        try:
            document = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": STATE_FORMAT, "logs": {}}
        except (OSError, ValueError) as exc:
            raise LogWatchError(f"{self.state_path}: not a readable checkpoint state file ({exc})") from exc
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT \
                or not isinstance(document.get("logs"), dict):
            raise LogWatchError(f"{self.state_path}: not a checkpoint state file ({STATE_FORMAT})")
        return document

    def _read(self) -> Held | None:
        entry = self._document()["logs"].get(self.log_key)
        if entry is None:
            return None
        try:
            note = str(entry["note"])
            checkpoint = open_checkpoint(note, [self.vkey])
            roots = {int(size): base64.b64decode(root, validate=True) for size, root in entry["roots"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise LogWatchError(f"{self.state_path}: the entry of {self.log_key} is damaged ({exc})") from exc
        roots[checkpoint.size] = checkpoint.root_hash
        return Held(note, checkpoint, roots)

    def _keep(self, held: Held | None, note: str, shown: Checkpoint) -> None:
        roots = dict(held.roots) if held else {}
        roots[shown.size] = shown.root_hash
        largest = note
        if held is not None and (held.checkpoint.size > shown.size or (
                held.checkpoint.size == shown.size and len(parse_note(held.note).signatures)
                > len(parse_note(note).signatures))):
            largest = held.note  # a smaller size, or the same with fewer cosignatures: the largest stays
        if held is not None and largest == held.note and shown.size in held.roots:
            return  # nothing new
        for size in sorted(roots)[:max(0, len(roots) - MAX_ROOTS)]:
            del roots[size]
        document = self._document()
        document["logs"][self.log_key] = {"note": largest, "roots": {
            str(size): base64.b64encode(root).decode("ascii") for size, root in sorted(roots.items())}}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        draft = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.draft")
        draft.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        os.replace(draft, self.state_path)
