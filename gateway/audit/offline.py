"""Verify an export offline: the reference algorithm of docs/merkle-log.md section 7, streamed.

The checks and the messages are the printed verifier's (``tests/audit/test_tamper.py`` runs both on the same
exports and tamperings and compares): the entry named is the first one that differs from what the signed
heads commit to. Two differences, both stricter, neither needed for what an export proves:

* the export is read twice from its file instead of held in memory (first the header and the tree heads,
  whose signatures are checked with the gateway's JWKS, then the entries in order, keeping 32 bytes per
  entry). An entry is judged when the next entry line arrives, with the inclusion proof found in between (as
  section 6 lays them out); a proof found later is still checked, against the entry of its index, but a
  failure is then reported when it is found, and every inclusion line must verify (the printed verifier
  uses the last one given for an index);
* ``consistency`` lines are checked too (the printed verifier skips them: it recomputes every root anyway);
* a head's ``checkpoint`` member (section 6), when present, must be a well-formed signed note stating the head's
  size and root (its signatures are section 13's business: they need the checkpoint and witness keys).

The JWKS always comes from the verifier — from the gateway or its operator over an authenticated channel,
never from the export: keys shipped with a log prove nothing about it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.checkpoint import CheckpointError, parse_checkpoint, parse_note
from gateway.audit.heads import keys_from_jwks
from gateway.audit.merkle import (
    EMPTY_ROOT,
    EXPORT_FORMAT,
    SignedTreeHead,
    TreeHead,
    TreeHeadInvalid,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from gateway.crypto.keys import PublicKey, b64url_decode


class ExportInvalid(ValueError):
    """The export does not verify; ``index`` is the first bad entry (``None`` when the fault is not an entry's)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class ExportSummary:
    """What a verified export proves: entries ``0 .. tree_size - 1`` under the signed head ``latest``."""

    log_id: str
    tree_size: int
    root_hash: bytes
    pruned: int
    heads: int
    latest: SignedTreeHead | None  # None only for an export of nothing (no head, no entry)


def verify_export_file(path: Path, jwks: Mapping[str, Any]) -> ExportSummary:
    def lines() -> Iterator[str]:
        with path.open(encoding="utf-8", newline="") as fh:
            for line in fh:
                yield line.rstrip("\r\n")

    return verify_export(lines, jwks)


def verify_export_lines(lines: Sequence[str], jwks: Mapping[str, Any]) -> ExportSummary:
    return verify_export(lambda: iter(lines), jwks)


def _check_checkpoint(note: object, size: int, root: bytes) -> None:
    try:
        if not isinstance(note, str):
            raise CheckpointError("not a string")
        stated = parse_checkpoint(parse_note(note).text)
    except CheckpointError as exc:
        raise ExportInvalid(f"the checkpoint of the tree head of size {size} is malformed: {exc}") from exc
    if (stated.size, stated.root_hash) != (size, root):
        raise ExportInvalid(f"the checkpoint of the tree head of size {size} states another size or root")


def _b64d(text: object) -> bytes:
    if not isinstance(text, str):
        raise ExportInvalid("a hash is not a base64url string")
    return b64url_decode(text)


def _object(line: str) -> dict[str, Any]:
    d = json.loads(line)
    if not isinstance(d, dict):
        raise ExportInvalid("a line is not a JSON object")
    return d


def verify_export(open_lines: Callable[[], Iterable[str]], jwks: Mapping[str, Any]) -> ExportSummary:
    """Verify the export read by ``open_lines()`` (called twice) against ``jwks``; ``ExportInvalid`` (or a
    ``ValueError`` for a line that is not JSON) naming the first bad entry."""
    keys = keys_from_jwks(jwks)
    log_id, heads, signed = _read_heads(open_lines(), keys)
    size = max(heads)
    check = _EntryCheck(heads, size)
    first = True
    for line in open_lines():
        if first:
            first = False
            continue
        d = _object(line)
        if d["type"] in ("entry", "pruned"):
            check.add(d, line.rstrip("\r\n").partition(',"entry":')[2][:-1] if d["type"] == "entry" else None)
        elif d["type"] == "inclusion":
            check.proof(d)
    check.finish()
    latest = signed.get(size)
    return ExportSummary(log_id, size, heads[size], check.pruned, len(signed), latest)


def _read_heads(lines: Iterable[str], keys: Mapping[str, PublicKey]) -> tuple[
        str, dict[int, bytes], dict[int, SignedTreeHead]]:
    iterator = iter(lines)
    try:
        log = _object(next(iterator))
    except StopIteration:
        raise ExportInvalid("an empty file is not an access log export") from None
    if log != {"type": "log", "format": EXPORT_FORMAT, "log_id": log.get("log_id")}:
        raise ExportInvalid("not an access log export")
    heads: dict[int, bytes] = {0: EMPTY_ROOT}
    signed: dict[int, SignedTreeHead] = {}
    consistency: list[dict[str, Any]] = []
    last = (-1, 0)  # the previous head's (size, timestamp_ms)
    for line in iterator:
        d = _object(line)
        kind = d.get("type")
        if kind == "tree_head":
            try:
                head = TreeHead.verify(SignedTreeHead.from_json(d), dict(keys))
            except TreeHeadInvalid as exc:
                raise ExportInvalid(f"a tree head does not verify: {exc}") from exc
            if head.log_id != log["log_id"]:
                raise ExportInvalid("not a tree head of this log")
            if heads.setdefault(head.tree_size, head.root_hash) != head.root_hash:
                raise ExportInvalid(f"two signed tree heads of size {head.tree_size} disagree")
            if head.tree_size <= last[0] or head.timestamp_ms < last[1]:
                raise ExportInvalid(f"the tree head of size {head.tree_size}: not in order of size and time")
            last = (head.tree_size, head.timestamp_ms)
            signed[head.tree_size] = SignedTreeHead.from_json(d)
            if "checkpoint" in d:
                _check_checkpoint(d["checkpoint"], head.tree_size, head.root_hash)
        elif kind == "consistency":
            consistency.append(d)
        elif kind not in ("entry", "pruned", "inclusion"):
            raise ExportInvalid(f"unknown line type {kind!r}")
    for d in consistency:
        old, new = d.get("old_size"), d.get("new_size")
        proof = [_b64d(p) for p in d.get("proof", [])]
        if old not in heads or new not in heads or not verify_consistency(old, new, heads[old], heads[new], proof):
            raise ExportInvalid(f"the consistency proof from size {old} to {new} does not verify")
    return str(log["log_id"]), heads, signed


class _EntryCheck:
    """The loop of the printed verifier, one entry at a time; an entry is judged when the next one arrives
    (its inclusion line sits in between)."""

    def __init__(self, heads: dict[int, bytes], size: int) -> None:
        self.heads, self.size = heads, size
        self.proofs: dict[int, dict[str, Any]] = {}
        self.pending: tuple[dict[str, Any], str | None] | None = None
        self.leaves: list[bytes] = []  # of the entries judged so far, for inclusion lines that come late
        self.previous_raw: str | None = None
        self.position = 0  # the index of the pending entry
        self.edge: list[tuple[int, bytes]] = []  # the compact range, as (subtree size, hash)
        self.good = 0
        self.pruned = 0

    def add(self, d: dict[str, Any], raw: str | None) -> None:
        if self.pending is not None:
            self._judge()
        self.pending = (d, raw)

    def proof(self, d: dict[str, Any]) -> None:
        index = d.get("index")
        if not isinstance(index, int) or index < 0:
            return  # no entry has that index: never used, as in the printed verifier
        if index >= self.position:
            self.proofs[index] = d
        elif not _included(self.leaves[index], index, d, self.heads):  # that entry was judged already
            raise ExportInvalid(f"entry {index}: not the entry the signed tree head commits to", index)

    def finish(self) -> None:
        if self.pending is not None:
            self._judge()
        if self.position < self.size:
            raise ExportInvalid(f"entry {self.position}: missing, the tree head of size {self.size} covers it",
                                self.position)

    def _judge(self) -> None:
        assert self.pending is not None
        (d, raw), i = self.pending, self.position
        self.pending = None

        def bad(why: str) -> ExportInvalid:
            return ExportInvalid(f"entry {i}: {why}", i)

        leaf, p = _b64d(d["leaf_hash"]), self.proofs.pop(i, None)
        if i >= self.size:
            raise bad("not covered by any signed tree head")
        if type(d["index"]) is not int or d["index"] != i:  # 7.0 is not an index (the format: an integer)
            raise bad(f"the line says index {d['index']}")
        if raw is None and i and self.previous_raw is not None:
            raise bad("pruned after a kept entry")
        try:
            same = raw is None or json.loads(raw) == d["entry"]
        except ValueError:
            same = False
        if not same:
            raise bad("malformed entry line")
        if raw is not None and hashlib.sha256(b"\x00" + raw.encode()).digest() != leaf:
            raise bad("does not match its leaf_hash")
        if p and not _included(leaf, i, p, self.heads):
            raise bad("not the entry the signed tree head commits to")
        h, n = leaf, 1
        while self.edge and self.edge[-1][0] == n:
            h, n = node_hash(self.edge.pop()[1], h), 2 * n
        self.edge.append((n, h))
        if i + 1 in self.heads:
            r = self.edge[-1][1]
            for _, left in reversed(self.edge[:-1]):
                r = node_hash(left, r)
            if r != self.heads[i + 1]:
                raise ExportInvalid(f"entry {self.good}: entries {self.good}..{i} do not match the signed tree head "
                                    f"of size {i + 1}", self.good)
            self.good = i + 1
        self.pruned += raw is None
        self.previous_raw = raw
        self.leaves.append(leaf)
        self.position += 1


def _included(leaf: bytes, index: int, p: dict[str, Any], heads: Mapping[int, bytes]) -> bool:
    size, proof = p.get("tree_size"), p.get("proof")
    root = heads.get(size) if isinstance(size, int) else None
    if root is None or not isinstance(proof, list) or not isinstance(size, int):
        return False
    # the reference verifier runs the same RFC 9162 steps on raw bytes; verify_inclusion also wants 32-byte hashes
    hashes = [_b64d(h) for h in proof]
    return len(leaf) == 32 and verify_inclusion(leaf, index, size, hashes, root)
