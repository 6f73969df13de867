"""C2SP checkpoints, signed notes and Ed25519 cosignatures, as pure functions (no I/O).

This module owns the wire format of the log's *checkpoints* — the tree heads meant to leave the building:

- ``tlog-checkpoint``: the note body ``<origin>\\n<size>\\n<base64 root>\\n[<extension>\\n ...]``;
- ``signed-note``: text, a blank line, then lines ``— <name> <base64(key id ‖ signature)>`` (U+2014, space),
  Ed25519 signatures (type byte 0x01) over the text, and verifier keys ``<name>+<hex key id>+<base64(type ‖ key)>``;
- ``tlog-cosignature/v1`` (Ed25519, type byte 0x04): a signature over ``cosignature/v1\\ntime <t>\\n`` followed by
  the checkpoint body, carried as ``key id ‖ u64 big-endian t ‖ 64-byte signature``.

Key id = the first 4 bytes of SHA-256(name ‖ 0x0A ‖ type ‖ 32-byte public key). Base64 is the padded standard
alphabet of RFC 4648 section 4 everywhere. Every malformed input raises ``CheckpointError``. The layout is
documented, with a worked example, in docs/merkle-log.md ("Checkpoints in C2SP signed-note form").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
EM_DASH = "\u2014"
MAX_SIGNATURES = 64
MAX_TIMESTAMP = 2**63 - 1
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_HEX8 = re.compile(r"[0-9a-f]{8}")


class CheckpointError(ValueError):
    """A checkpoint, note, signature or verifier key that does not follow the C2SP specifications."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The three mandatory lines of a checkpoint and its optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The note text: each line newline-terminated, the root in padded standard base64."""
        _check_line(self.origin, "origin")
        if not 0 <= self.size <= MAX_TIMESTAMP:
            raise CheckpointError("tree size out of range")
        if len(self.root_hash) != 32:
            raise CheckpointError("root hash must be 32 bytes")
        for ext in self.extensions:
            _check_line(ext, "extension line")
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id, and the signature bytes after the key id."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: its text (with the final newline) and its signature lines in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A public key as trusted by a verifier: name, signature type (0x01 or 0x04) and raw 32-byte key."""

    name: str
    key_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key_type, self.public_key)

    def encode(self) -> str:
        """``<name>+<hex key id>+<base64(type ‖ key)>``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.key_type]) + self.public_key)}"


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified cosignature: who cosigned, and the POSIX time (seconds) it states."""

    name: str
    timestamp: int


def key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(name ‖ 0x0A ‖ type ‖ public key)."""
    _check_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:4]


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verifier_key(name: str, key: Ed25519PrivateKey | Ed25519PublicKey, key_type: int = ED25519) -> VerifierKey:
    if key_type not in (ED25519, COSIGNATURE_V1):
        raise CheckpointError("unsupported signature type")
    _check_name(name)
    return VerifierKey(name, key_type, raw_public_key(key))


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse ``<name>+<hex key id>+<base64(type ‖ key)>``; the key id must match the key."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("verifier key must be name+keyid+key")
    name, hex_id, material = parts
    _check_name(name)
    if not _HEX8.fullmatch(hex_id):
        raise CheckpointError("verifier key id must be 8 lowercase hex digits")
    raw = _unb64(material, "verifier key")
    if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
        raise CheckpointError("verifier key must be type 0x01 or 0x04 and a 32-byte Ed25519 key")
    vkey = VerifierKey(name, raw[0], raw[1:])
    if vkey.key_id.hex() != hex_id:
        raise CheckpointError("verifier key id does not match its key")
    try:
        Ed25519PublicKey.from_public_bytes(vkey.public_key)
    except ValueError as exc:
        raise CheckpointError("not an Ed25519 public key") from exc
    return vkey


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> NoteSignature:
    """An Ed25519 (type 0x01) note signature over ``text``."""
    _check_text(text)
    return NoteSignature(name, key_id(name, ED25519, raw_public_key(key)), key.sign(text.encode()))


def sign_checkpoint(checkpoint: Checkpoint, name: str, key: Ed25519PrivateKey) -> str:
    """The checkpoint as a signed note carrying one Ed25519 signature by ``name``."""
    body = checkpoint.body()
    return Note(body, (sign_note(body, name, key),)).render()


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The bytes a tlog-cosignature/v1 signs: header line, time line, whole checkpoint body."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError("cosignature timestamp out of range")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


def cosign(body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> NoteSignature:
    """A type-0x04 cosignature of checkpoint ``body`` at POSIX time ``timestamp``."""
    parse_checkpoint(body)
    signature = key.sign(cosignature_message(body, timestamp))
    return NoteSignature(
        name, key_id(name, COSIGNATURE_V1, raw_public_key(key)), struct.pack(">Q", timestamp) + signature
    )


def add_signatures(note: str, extra: Iterable[NoteSignature]) -> str:
    """``note`` with further signature lines appended (e.g. witness cosignatures)."""
    parsed = parse_note(note)
    return Note(parsed.text, parsed.signatures + tuple(extra)).render()


def merge_signatures(stored: str, new: str) -> str:
    """``stored`` with the signature lines of ``new`` it lacks appended, in ``new``'s order: how cosignatures
    gathered later join a kept note. ``CheckpointError`` when the two notes' texts differ (another checkpoint)."""
    kept, more = parse_note(stored), parse_note(new)
    if kept.text != more.text:
        raise CheckpointError("the two notes sign different checkpoints")
    extra = tuple(s for s in more.signatures if s not in kept.signatures)
    return stored if not extra else Note(kept.text, kept.signatures + extra).render()


def parse_note(note: str) -> Note:
    """Split a signed note at its last blank line and parse every signature line; refuse anything malformed."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("note contains a control character")
    if not note.endswith("\n"):
        raise CheckpointError("note must end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise CheckpointError("note has no blank line before its signatures")
    text, sig_block = note[: cut + 1], note[cut + 2 :]
    lines = sig_block[:-1].split("\n") if sig_block else []
    if not lines:
        raise CheckpointError("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError("note has too many signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint note text (origin, size, root hash, extension lines)."""
    _check_text(body)
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint needs origin, size and root hash lines")
    origin, size, root, *extensions = lines
    if not origin:
        raise CheckpointError("checkpoint origin is empty")
    if not _SIZE.fullmatch(size) or int(size) > MAX_TIMESTAMP:
        raise CheckpointError("checkpoint size is not a decimal without leading zeroes")
    root_hash = _unb64(root, "root hash")
    if len(root_hash) != 32:
        raise CheckpointError("root hash must be 32 bytes")
    if any(not ext for ext in extensions):
        raise CheckpointError("extension lines must be non-empty")
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def _by_trusted_keys(parsed: Note, keys: Sequence[VerifierKey],
                     key_type: int) -> Iterator[tuple[NoteSignature, VerifierKey]]:
    """The note's signature lines whose (name, key id) match one of ``keys`` of ``key_type``, with that key;
    the other lines are skipped, as the signed-note spec requires of unknown keys."""
    trusted = {(k.name, k.key_id): k for k in keys if k.key_type == key_type}
    for sig in parsed.signatures:
        key = trusted.get((sig.name, sig.key_id))
        if key is not None:
            yield sig, key


def open_note(note: str, keys: Sequence[VerifierKey]) -> tuple[Note, tuple[NoteSignature, ...]]:
    """Verify ``note`` against trusted Ed25519 (0x01) keys.

    Signatures whose (name, key id) match no key are ignored; a matching signature that fails refuses the whole
    note; at least one must verify. Returns the note and the signatures that verified.
    """
    parsed = parse_note(note)
    good = []
    for sig, k in _by_trusted_keys(parsed, keys, ED25519):
        if not _verify(k.public_key, sig.signature, parsed.text.encode()):
            raise CheckpointError(f"signature by {sig.name} does not verify")
        good.append(sig)
    if not good:
        raise CheckpointError("no signature by a trusted key")
    return parsed, tuple(good)


def open_checkpoint(note: str, keys: Sequence[VerifierKey]) -> Checkpoint:
    """The checkpoint of a signed note carrying at least one valid signature by one of ``keys``."""
    parsed, _ = open_note(note, keys)
    return parse_checkpoint(parsed.text)


def verify_cosignatures(note: str, witnesses: Sequence[VerifierKey]) -> tuple[Cosignature, ...]:
    """The valid cosignatures in ``note`` by the given type-0x04 keys; unknown lines ignored, bad ones refused."""
    parsed = parse_note(note)
    parse_checkpoint(parsed.text)
    found = []
    for sig, k in _by_trusted_keys(parsed, witnesses, COSIGNATURE_V1):
        if len(sig.signature) != 8 + 64:
            raise CheckpointError(f"cosignature by {sig.name} is not 8 + 64 bytes")
        (timestamp,) = struct.unpack(">Q", sig.signature[:8])
        if timestamp > MAX_TIMESTAMP:
            raise CheckpointError("cosignature timestamp out of range")
        message = cosignature_message(parsed.text, timestamp)
        if not _verify(k.public_key, sig.signature[8:], message):
            raise CheckpointError(f"cosignature by {sig.name} does not verify")
        found.append(Cosignature(sig.name, timestamp))
    return tuple(found)


def _parse_signature_line(line: str) -> NoteSignature:
    prefix = EM_DASH + " "
    if not line.startswith(prefix):
        raise CheckpointError("signature line must start with an em dash and a space")
    parts = line[len(prefix) :].split(" ")
    if len(parts) != 2:
        raise CheckpointError("signature line must be name and base64 signature")
    name, blob = parts
    _check_name(name)
    raw = _unb64(blob, "signature", canonical=False)  # (as Go's note.Open: a line by a key nobody here knows
    if len(raw) < 5:                                  # must be skipped, whatever its unused pad bits)
        raise CheckpointError("signature is shorter than a key id")
    return NoteSignature(name, raw[:4], raw[4:])


def _verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str, *, canonical: bool = True) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CheckpointError(f"{what} is not standard padded base64") from exc
    if canonical and _b64(raw) != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name) or any(ord(c) < 0x20 for c in name):
        raise CheckpointError("key name must be non-empty, without spaces or '+'")


def _check_line(line: str, what: str) -> None:
    if not line or "\n" in line or any(ord(c) < 0x20 for c in line):
        raise CheckpointError(f"{what} must be a non-empty single line")


def _check_text(text: str) -> None:
    if not text.endswith("\n") or any(ord(c) < 0x20 and c != "\n" for c in text):
        raise CheckpointError("note text must end with a newline and hold no control characters")
