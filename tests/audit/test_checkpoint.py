"""C2SP checkpoints, signed notes and cosignatures: round trips, refusals, and independent checks.

The independent checks rebuild every byte with hashlib, base64 and the cryptography library directly, without
the module under test; the published Go ``sumdb/note`` example (PeterNeumann) anchors the note format to another
implementation: Ed25519 is deterministic, so our signer must reproduce its signature byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit import checkpoint as cp

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann " + GO_SIG + "\n"

LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
ORIGIN = "anss.gov.ma/access-log"
WITNESS = "cndp.ma/witness"
ROOT = hashlib.sha256(b"root").digest()


def raw(key: Ed25519PrivateKey) -> bytes:
    return cp.raw_public_key(key)


def go_private_key() -> Ed25519PrivateKey:
    material = GO_SKEY.split("+", 4)[4]
    decoded = base64.b64decode(material)
    assert decoded[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(decoded[1:])


# --- independent reimplementation (hashlib + cryptography only) ---------------------------------------------


def ref_key_id(name: str, key_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + bytes([key_type]) + public).digest()[:4]


def ref_checkpoint_note(origin: str, size: int, root: bytes, key: Ed25519PrivateKey) -> str:
    body = f"{origin}\n{size}\n{base64.standard_b64encode(root).decode()}\n"
    blob = ref_key_id(origin, 1, raw(key)) + key.sign(body.encode())
    return body + "\n" + "\u2014 " + origin + " " + base64.standard_b64encode(blob).decode() + "\n"


def ref_check_cosignature(line: str, body: str, public: bytes) -> int:
    assert line.startswith("\u2014 ")
    name, blob = line[2:].split(" ")
    data = base64.b64decode(blob)
    assert data[:4] == ref_key_id(name, 4, public)
    (timestamp,) = struct.unpack(">Q", data[4:12])
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(data[12:], message)
    return int(timestamp)


# --- published vector ---------------------------------------------------------------------------------------


def test_go_sumdb_note_vector_verifies_and_is_reproduced() -> None:
    vkey = cp.parse_verifier_key(GO_VKEY)
    assert vkey.name == "PeterNeumann" and vkey.key_type == cp.ED25519
    assert vkey.encode() == GO_VKEY
    note, good = cp.open_note(GO_NOTE, [vkey])
    assert note.text == GO_TEXT and [s.name for s in good] == ["PeterNeumann"]
    signed = cp.Note(GO_TEXT, (cp.sign_note(GO_TEXT, "PeterNeumann", go_private_key()),)).render()
    assert signed == GO_NOTE
    assert cp.verifier_key("PeterNeumann", go_private_key()).encode() == GO_VKEY
    with pytest.raises(cp.CheckpointError, match="does not verify"):
        cp.open_note(GO_NOTE.replace("cryptography", "cryptographY"), [vkey])


# --- checkpoints --------------------------------------------------------------------------------------------


def test_checkpoint_matches_independent_encoding_and_round_trips() -> None:
    note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 20852163, ROOT), ORIGIN, LOG_KEY)
    assert note == ref_checkpoint_note(ORIGIN, 20852163, ROOT, LOG_KEY)
    vkey = cp.verifier_key(ORIGIN, LOG_KEY)
    assert vkey.key_id == ref_key_id(ORIGIN, 1, raw(LOG_KEY))
    assert cp.parse_verifier_key(vkey.encode()) == vkey
    assert cp.open_checkpoint(note, [vkey]) == cp.Checkpoint(ORIGIN, 20852163, ROOT)


def test_spec_example_body_parses() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    parsed = cp.parse_checkpoint(body)
    assert (parsed.origin, parsed.size) == ("example.com/behind-the-sofa", 20852163)
    assert parsed.body() == body


def test_empty_tree_and_extension_lines_round_trip() -> None:
    empty = cp.Checkpoint(ORIGIN, 0, hashlib.sha256(b"").digest(), ("cadence 3600",))
    body = empty.body()
    # SHA-256("") is e3b0c442…7852b855; its padded standard base64, written out:
    EMPTY_B64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert body.splitlines()[1:] == ["0", EMPTY_B64, "cadence 3600"]
    note = cp.sign_checkpoint(empty, ORIGIN, LOG_KEY)
    assert cp.open_checkpoint(note, [cp.verifier_key(ORIGIN, LOG_KEY)]) == empty


def test_unknown_keys_ignored_but_one_known_required() -> None:
    note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 5, ROOT), ORIGIN, LOG_KEY)
    other = Ed25519PrivateKey.generate()
    stranger = cp.sign_note(cp.parse_note(note).text, "stranger.example", other)
    # an unknown signature first, then the trusted one: still accepted
    both = cp.Note(cp.parse_note(note).text, (stranger, *cp.parse_note(note).signatures)).render()
    assert cp.open_checkpoint(both, [cp.verifier_key(ORIGIN, LOG_KEY)]).size == 5
    # same name, other key (key id differs): ignored, hence no trusted signature at all
    with pytest.raises(cp.CheckpointError, match="no signature by a trusted key"):
        cp.open_checkpoint(note, [cp.verifier_key(ORIGIN, other)])
    # a cosigner key (type 0x04) never verifies a log signature
    with pytest.raises(cp.CheckpointError, match="no signature by a trusted key"):
        cp.open_checkpoint(note, [cp.verifier_key(ORIGIN, LOG_KEY, cp.COSIGNATURE_V1)])


def test_a_stranger_line_with_unused_pad_bits_set_is_skipped_like_any_stranger() -> None:
    """Go's note.Open decodes signature lines without the canonical check: a line by an unknown key whose last
    base64 character carries non-zero pad bits is ignored there, so it must not refuse the note here either."""
    note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 5, ROOT), ORIGIN, LOG_KEY)
    text = cp.parse_note(note).text
    blob = base64.b64encode(b"\x01\x02\x03\x04" + bytes(64)).decode()  # 68 bytes: ends "AA="
    assert blob.endswith("AA=")
    odd = blob[:-2] + "B="  # the same bytes with a pad bit set: not canonical
    assert base64.b64decode(odd) == base64.b64decode(blob) and odd != blob
    with_stranger = note.replace("\n\n", f"\n\n\u2014 stranger.example {odd}\n", 1)
    assert cp.parse_note(with_stranger).text == text
    assert cp.open_checkpoint(with_stranger, [cp.verifier_key(ORIGIN, LOG_KEY)]).size == 5


def test_known_key_with_bad_signature_refuses_whole_note() -> None:
    note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 5, ROOT), ORIGIN, LOG_KEY)
    forged = note.replace("\n5\n", "\n6\n")
    with pytest.raises(cp.CheckpointError, match="does not verify"):
        cp.open_checkpoint(forged, [cp.verifier_key(ORIGIN, LOG_KEY)])


def test_note_splits_at_last_blank_line() -> None:
    text = "first paragraph\n\nsecond paragraph\n"
    note = cp.Note(text, (cp.sign_note(text, "n.example", LOG_KEY),)).render()
    parsed, _ = cp.open_note(note, [cp.verifier_key("n.example", LOG_KEY)])
    assert parsed.text == text


# --- cosignatures -------------------------------------------------------------------------------------------


def test_cosignature_matches_independent_check_and_verifies() -> None:
    note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 7, ROOT, ("x",)), ORIGIN, LOG_KEY)
    body = cp.parse_note(note).text
    cosig = cp.cosign(body, WITNESS, WITNESS_KEY, 1679315147)
    assert cosig.key_id == ref_key_id(WITNESS, 4, raw(WITNESS_KEY))
    assert cosig.key_id != ref_key_id(WITNESS, 1, raw(WITNESS_KEY))
    witnessed = cp.add_signatures(note, [cosig])
    assert ref_check_cosignature(witnessed.splitlines()[-1], body, raw(WITNESS_KEY)) == 1679315147
    wkey = cp.verifier_key(WITNESS, WITNESS_KEY, cp.COSIGNATURE_V1)
    assert wkey.encode().split("+")[2].startswith("B")  # base64 of 0x04 || key
    assert cp.parse_verifier_key(wkey.encode()) == wkey
    assert cp.verify_cosignatures(witnessed, [wkey]) == (cp.Cosignature(WITNESS, 1679315147),)
    # the log's own signature still verifies; the cosignature line is ignored by the log key
    assert cp.open_checkpoint(witnessed, [cp.verifier_key(ORIGIN, LOG_KEY)]).size == 7
    # an Ed25519 (0x01) key of the same witness does not count as a cosigner
    assert cp.verify_cosignatures(witnessed, [cp.verifier_key(WITNESS, WITNESS_KEY)]) == ()


def test_cosignature_over_other_time_or_body_refused() -> None:
    note = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 7, ROOT), ORIGIN, LOG_KEY)
    body = cp.parse_note(note).text
    good = cp.cosign(body, WITNESS, WITNESS_KEY, 100)
    wkey = cp.verifier_key(WITNESS, WITNESS_KEY, cp.COSIGNATURE_V1)
    shifted = cp.NoteSignature(WITNESS, good.key_id, struct.pack(">Q", 101) + good.signature[8:])
    with pytest.raises(cp.CheckpointError, match="does not verify"):
        cp.verify_cosignatures(cp.add_signatures(note, [shifted]), [wkey])
    other_body = cp.Checkpoint(ORIGIN, 8, ROOT).body()
    moved = cp.Note(other_body, (good,)).render()
    with pytest.raises(cp.CheckpointError, match="does not verify"):
        cp.verify_cosignatures(moved, [wkey])
    short = cp.NoteSignature(WITNESS, good.key_id, good.signature[:-1])
    with pytest.raises(cp.CheckpointError, match="8 \\+ 64"):
        cp.verify_cosignatures(cp.add_signatures(note, [short]), [wkey])
    big = cp.NoteSignature(WITNESS, good.key_id, struct.pack(">Q", 2**63) + good.signature[8:])
    with pytest.raises(cp.CheckpointError, match="out of range"):
        cp.verify_cosignatures(cp.add_signatures(note, [big]), [wkey])
    with pytest.raises(cp.CheckpointError, match="out of range"):
        cp.cosign(body, WITNESS, WITNESS_KEY, -1)


# --- every malformed input refused --------------------------------------------------------------------------

GOOD = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 3, ROOT), ORIGIN, LOG_KEY)
SIGLINE = GOOD.split("\n\n")[1]


@pytest.mark.parametrize(
    "note",
    [
        GOOD[:-1],  # no final newline
        GOOD.replace("\n\n", "\n"),  # no blank line
        GOOD.split("\n\n")[0] + "\n\n",  # no signature lines
        GOOD.replace("\u2014 ", "- "),  # hyphen, not em dash
        GOOD.replace("\u2014 ", "\u2014"),  # no space after the dash
        GOOD.replace(f"\u2014 {ORIGIN} ", f"\u2014 {ORIGIN}  "),  # double space
        GOOD.replace(f"\u2014 {ORIGIN} ", "\u2014  "),  # empty key name
        GOOD.replace(f"\u2014 {ORIGIN} ", "\u2014 a+b "),  # plus in key name
        GOOD.rstrip("\n").rstrip("=") + "\n",  # unpadded base64
        GOOD.replace(SIGLINE, SIGLINE.replace("+", "-").replace("/", "_")),  # base64url
        GOOD.replace(SIGLINE, f"\u2014 {ORIGIN} AAAA\n"),  # shorter than a key id
        GOOD.replace("\n3\n", "\n3\r\n"),  # control character
        GOOD + "\n",  # trailing blank line
        GOOD.replace("\n\n", "\n\n" + SIGLINE * (cp.MAX_SIGNATURES)),  # too many signatures
    ],
)
def test_malformed_notes_refused(note: str) -> None:
    with pytest.raises(cp.CheckpointError):
        cp.open_note(note, [cp.verifier_key(ORIGIN, LOG_KEY)])


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n3\n",  # two lines
        f"\n3\n{base64.b64encode(ROOT).decode()}\n",  # empty origin
        f"{ORIGIN}\n03\n{base64.b64encode(ROOT).decode()}\n",  # leading zero
        f"{ORIGIN}\n-3\n{base64.b64encode(ROOT).decode()}\n",  # negative
        f"{ORIGIN}\n+3\n{base64.b64encode(ROOT).decode()}\n",  # sign
        f"{ORIGIN}\n{2**63}\n{base64.b64encode(ROOT).decode()}\n",  # out of range
        f"{ORIGIN}\n3\n{base64.urlsafe_b64encode(ROOT).decode().rstrip('=')}\n",  # base64url, unpadded
        f"{ORIGIN}\n3\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31-byte root
        f"{ORIGIN}\n3\n{base64.b64encode(ROOT).decode()}\n\nx\n",  # empty extension line
        f"{ORIGIN}\n3\n{base64.b64encode(ROOT).decode()}",  # no final newline
    ],
)
def test_malformed_checkpoints_refused(body: str) -> None:
    with pytest.raises(cp.CheckpointError):
        cp.parse_checkpoint(body)


def test_checkpoint_body_refuses_bad_fields() -> None:
    for bad in (
        cp.Checkpoint("", 1, ROOT),
        cp.Checkpoint("a\nb", 1, ROOT),
        cp.Checkpoint(ORIGIN, -1, ROOT),
        cp.Checkpoint(ORIGIN, 1, ROOT[:31]),
        cp.Checkpoint(ORIGIN, 1, ROOT, ("",)),
    ):
        with pytest.raises(cp.CheckpointError):
            bad.body()


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a3",  # two parts
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case hex
        "PeterNeumann+c74f20a3+AhpcD2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",  # base64url
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # empty name
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
    ],
)
def test_malformed_verifier_keys_refused(vkey: str) -> None:
    with pytest.raises(cp.CheckpointError):
        cp.parse_verifier_key(vkey)


def test_documented_worked_example_verifies_as_printed() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "merkle-log.md").read_text(encoding="utf-8")
    section = doc.split("## 12. Checkpoints in C2SP signed-note form", 1)[1]
    blocks = re.findall(r"```text\n(.*?)```", section, re.S)
    log_vkey, witness_vkey, note = blocks[1].strip(), blocks[2].strip(), blocks[3]
    log_key = cp.parse_verifier_key(log_vkey)
    witness_key = cp.parse_verifier_key(witness_vkey)
    assert log_key == cp.verifier_key("anss.gov.ma/access-log", LOG_KEY)
    assert witness_key == cp.verifier_key(WITNESS, WITNESS_KEY, cp.COSIGNATURE_V1)
    assert cp.open_checkpoint(note, [log_key]) == cp.Checkpoint(ORIGIN, 5, ROOT)
    assert cp.verify_cosignatures(note, [witness_key]) == (cp.Cosignature(WITNESS, 1764700000),)
    assert ref_check_cosignature(note.splitlines()[-1], cp.parse_note(note).text, raw(WITNESS_KEY)) == 1764700000
    assert note == ref_checkpoint_note(ORIGIN, 5, ROOT, LOG_KEY) + note.splitlines()[-1] + "\n"
