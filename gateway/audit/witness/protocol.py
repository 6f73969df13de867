"""The wire format of C2SP ``tlog-witness`` ``add-checkpoint``, as pure functions (no I/O).

Request body: ``old <size>\\n``, zero to 63 consistency-proof lines (one hash each, padded standard base64), an
empty line, then the checkpoint as a signed note. A 200 answer is one or more note signature lines (the
witness's cosignatures); a 409 answer to a wrong old size is the witness's size in decimal and a newline, typed
``text/x.tlog.size``. ``WitnessRefusal`` carries the HTTP status the protocol prescribes for each refusal; it is
not a ``GatewayError``: the witness speaks this protocol (plain-text bodies), not the gateway's problem+json API.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.audit.checkpoint import CheckpointError, NoteSignature, parse_note

SIZE_CONTENT_TYPE = "text/x.tlog.size"
COSIGNATURE_CONTENT_TYPE = "text/plain; charset=utf-8"
MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 64 * 1024
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_SIZE = 2**63 - 1


class WitnessRefusal(Exception):
    """A submission the witness refuses, with the status ``tlog-witness`` prescribes (400, 403, 404, 409, 422)
    and, for a 409 on the old size, the size the witness holds."""

    def __init__(self, status: int, reason: str, *, size: int | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.size = status, reason, size


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` body: the old size, the consistency proof and the signed checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def encode(self) -> bytes:
        """The request body (what a log sends)."""
        if not 0 <= self.old_size <= MAX_SIZE or len(self.proof) > MAX_PROOF_LINES:
            raise ValueError("old size out of range or more than 63 proof hashes")
        if any(len(h) != 32 for h in self.proof):
            raise ValueError("a proof hash is 32 bytes")
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode("ascii") for h in self.proof)]
        return ("".join(line + "\n" for line in lines) + "\n" + self.note).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body; malformed input is a ``WitnessRefusal`` with status 400."""
    if len(body) > MAX_BODY_BYTES:
        raise WitnessRefusal(400, "request body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WitnessRefusal(400, "request body is not UTF-8") from exc
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessRefusal(400, "no empty line between the proof and the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old ") or not _SIZE.fullmatch(first[4:]) or int(first[4:]) > MAX_SIZE:
        raise WitnessRefusal(400, "the first line must be `old <size>` in decimal without leading zeroes")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise WitnessRefusal(400, "more than 63 consistency proof lines")
    proof = tuple(_hash_line(line) for line in proof_lines)
    return AddCheckpoint(int(first[4:]), proof, note)


def _hash_line(line: str) -> bytes:
    try:
        raw = base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise WitnessRefusal(400, "a proof line is not standard padded base64") from exc
    if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != line:
        raise WitnessRefusal(400, "a proof line is not one 32-byte hash in canonical base64")
    return raw


def encode_size(size: int) -> bytes:
    """The body of a 409 on the old size."""
    return f"{size}\n".encode("ascii")


def parse_size(body: bytes) -> int:
    """Read a 409 body (``text/x.tlog.size``); ``ValueError`` when malformed."""
    text = body.decode("ascii", errors="replace")
    if not text.endswith("\n") or not _SIZE.fullmatch(text[:-1]) or int(text[:-1]) > MAX_SIZE:
        raise ValueError("a text/x.tlog.size body is a decimal size and a newline")
    return int(text[:-1])


def encode_cosignatures(signatures: Sequence[NoteSignature]) -> bytes:
    """The body of a 200: the cosignature lines."""
    return "".join(s.line() for s in signatures).encode("utf-8")


def parse_cosignatures(body: bytes) -> tuple[NoteSignature, ...]:
    """The signature lines of a 200 body (not verified: ``checkpoint.verify_cosignatures`` does that once they
    are appended to the checkpoint); ``CheckpointError`` when malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError("cosignature lines are not UTF-8") from exc
    if not text:
        raise CheckpointError("no cosignature line")
    # the lines parse exactly as the signature block of a note does
    return parse_note("x\n\n" + text).signatures
