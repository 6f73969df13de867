"""The access log as an append-only Merkle tree log in the style of RFC 9162 (Certificate Transparency 2.0).

Pure functions and small value types, no I/O:

* hashing with domain separation — ``leaf_hash`` = SHA-256(0x00 || entry), ``node_hash`` = SHA-256(0x01 || left ||
  right) — and the Merkle Tree Hash of RFC 9162 section 2.1.1 (``root``; the empty tree hashes to SHA-256(""));
* inclusion proofs (section 2.1.3) and consistency proofs (section 2.1.4): generated from leaf hashes
  (``inclusion_proof``, ``consistency_proof``) or from any store through ``Prover`` and the ``LeafSource``
  protocol, and verified with the RFC's algorithms step by step (``verify_inclusion``, ``verify_consistency``);
* ``CompactRange``: the O(log n) right edge of a growing tree, enough to append and to compute the root of a
  billion-entry log without holding its leaves;
* signed tree heads (``TreeHead``, ``SignedTreeHead``): a canonical byte encoding signed as a detached JWS;
* ``export_lines``: the JSON Lines export a third party verifies offline (format in docs/merkle-log.md).

A subtree of 2^k leaves starting at a multiple of 2^k (a *perfect* subtree) never changes once its last leaf is
appended, so its hash may be cached or stored for ever; only the O(log n) subtrees on the right edge of a tree
are transient. ``Prover`` memoises perfect subtrees and ``CompactRange.append`` reports each one it completes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.crypto.jws import SignatureInvalid, detached, verify_detached
from gateway.crypto.keys import PublicKey, SigningKey, b64url, b64url_decode

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}), RFC 9162 section 2.1.1
TREE_HEAD_FORMAT = "anss-tree-head-v1"  # the "format" member of the signed bytes and the JWS "typ"
EXPORT_FORMAT = "anss-access-log-export-v1"
MAX_SIZE = 2**63 - 1

_LOG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


# --- hashing -------------------------------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 section 2.1.1: the hash of a leaf, SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 section 2.1.1: the hash of an interior node, SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): the ``k`` of RFC 9162 section 2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_root(hashes: Sequence[bytes]) -> bytes:
    """MTH of 2^k leaf hashes, level by level."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


# --- proofs over a store -------------------------------------------------------------------------------------------


class LeafSource(Protocol):
    """Where the leaf hashes live: a table, a file, a list."""

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """The leaf hashes of entries ``start`` .. ``end - 1``, in order; exactly ``end - start`` of them."""
        ...


class SequenceSource:
    """A ``LeafSource`` over leaf hashes held in memory."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.hashes = hashes

    def __len__(self) -> int:
        return len(self.hashes)

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        return self.hashes[start:end]


@dataclass(frozen=True)
class Node:
    """A perfect subtree: the hash of leaves ``index * 2**level`` .. ``(index + 1) * 2**level - 1``."""

    level: int
    index: int
    hash: bytes


class Prover:
    """Merkle tree hashes and proofs for the first ``tree_size`` leaves of a ``LeafSource``.

    Perfect subtrees of ``batch_level`` levels or fewer (64 leaves by default) are hashed from one
    ``leaf_hashes`` call; larger ones from their two halves, memoised in ``cache`` keyed by ``(level, index)``.
    Perfect subtrees are immutable once complete, so ``cache`` may be a persistent mapping (a table the store
    fills from ``CompactRange.append``) shared by every tree size; transient right-edge hashes are never cached.
    """

    def __init__(self, source: LeafSource, cache: MutableMapping[tuple[int, int], bytes] | None = None,
                 *, batch_level: int = 6) -> None:
        if not 0 <= batch_level <= 20:
            raise ValueError("batch_level must be within 0..20")
        self.source = source
        self.cache: MutableMapping[tuple[int, int], bytes] = {} if cache is None else cache
        self.batch_level = batch_level

    def _leaves(self, start: int, end: int) -> list[bytes]:
        got = [bytes(h) for h in self.source.leaf_hashes(start, end)]
        if len(got) != end - start or not all(len(h) == HASH_SIZE for h in got):
            raise ValueError(f"the leaf source did not return {end - start} leaf hashes for {start}..{end - 1}")
        return got

    def subtree_hash(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree ``(level, index)``; its leaves must all exist in the source."""
        if level < 0 or index < 0:
            raise ValueError("level and index must not be negative")
        cached = self.cache.get((level, index))
        if cached is not None:
            return cached
        if level <= self.batch_level:
            value = _perfect_root(self._leaves(index << level, (index + 1) << level))
        else:
            value = node_hash(self.subtree_hash(level - 1, 2 * index), self.subtree_hash(level - 1, 2 * index + 1))
        if level >= self.batch_level:
            self.cache[(level, index)] = value
        return value

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]), RFC 9162 section 2.1.1; aligned perfect pieces come from ``subtree_hash``."""
        n = end - start
        if n < 0 or start < 0:
            raise ValueError("not a range of leaves")
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self.subtree_hash(n.bit_length() - 1, start // n)
        k = _split(n)
        return node_hash(self.range_hash(start, start + k), self.range_hash(start + k, end))

    def root(self, tree_size: int) -> bytes:
        return self.range_hash(0, tree_size)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """PATH(index, D[tree_size]), RFC 9162 section 2.1.3.1, ordered from the leaf up."""
        if not 0 <= index < tree_size:
            raise ValueError(f"no leaf {index} in a tree of {tree_size}")
        path: list[bytes] = []
        lo, hi = 0, tree_size
        while hi - lo > 1:  # PATH(m, D[lo:hi]) = PATH(m, one half) : MTH(the other half)
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.range_hash(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[new_size]), RFC 9162 section 2.1.4.1; empty when old_size is 0 or new_size."""
        if not 0 <= old_size <= new_size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        proof: list[bytes] = []
        lo, hi, m, complete = 0, new_size, old_size, True  # SUBPROOF(m, D[lo:hi], complete)
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self.range_hash(lo, hi))
        proof.reverse()
        return proof

    def compact_range(self, tree_size: int) -> CompactRange:
        """The right edge of the first ``tree_size`` leaves, to resume appending without reading them all."""
        hashes, start = [], 0
        for level in range(tree_size.bit_length() - 1, -1, -1):
            if tree_size >> level & 1:
                hashes.append(self.subtree_hash(level, start >> level))
                start += 1 << level
        return CompactRange(tree_size, hashes)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]), RFC 9162 section 2.1.1, of the given leaf hashes (SHA-256 of "" for none)."""
    return Prover(SequenceSource(leaf_hashes)).root(len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]), RFC 9162 section 2.1.3.1, for the tree of all the given leaf hashes."""
    return Prover(SequenceSource(leaf_hashes)).inclusion_proof(index, len(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]), RFC 9162 section 2.1.4.1, from the first ``old_size`` leaves to all of them."""
    return Prover(SequenceSource(leaf_hashes)).consistency_proof(old_size, len(leaf_hashes))


# --- verification --------------------------------------------------------------------------------------------------


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, step by step; every hash must also be 32 bytes."""
    if not (_is_hash(leaf_hash) and _is_hash(root) and all(_is_hash(p) for p in proof)):
        return False
    # 1. leaf_index >= tree_size fails (and so does a negative index).
    if index < 0 or index >= tree_size:
        return False
    # 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
    fn, sn, r = index, tree_size - 1, leaf_hash
    # 4. for each p in the inclusion path:
    for p in proof:
        if sn == 0:  # a.
            return False
        if fn & 1 or fn == sn:  # b.
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:  # b.ii: until LSB(fn) is set or fn is 0
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1  # c.
        sn >>= 1
    # 5.
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2, step by step, for 0 < old_size < new_size.

    The RFC defines the algorithm for that case only. Here equal sizes need an empty proof and equal roots, and
    an old size of 0 an empty proof and the empty-tree root (MTH({}) is defined, so any other root is false).
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if old_size < 0 or old_size > new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    # 1. an empty path fails.
    if not proof:
        return False
    path = list(proof)
    # 2. first an exact power of 2: prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4. while LSB(fn) is set, shift both.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    return fr == old_root and sr == new_root and sn == 0


# --- the growing log -----------------------------------------------------------------------------------------------


class CompactRange:
    """The right edge ("frontier") of a tree of ``size`` leaves: one perfect-subtree hash per set bit of ``size``,
    largest (leftmost) first. O(log n) hashes suffice to append and to compute the root.

    Persist ``size`` and ``hashes`` with each committed batch to resume without reading the log.
    """

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self._hashes = [bytes(h) for h in hashes]
        if not 0 <= size <= MAX_SIZE or len(self._hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {max(size, 0).bit_count()} right-edge hashes")
        if not all(len(h) == HASH_SIZE for h in self._hashes):
            raise ValueError("right-edge hashes are 32 bytes")
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Add a leaf; return the perfect subtrees of two or more leaves this completes, smallest first
        (the caching opportunity: each is final)."""
        if not _is_hash(leaf_hash):
            raise ValueError("a leaf hash is 32 bytes")
        if self._size >= MAX_SIZE:
            raise ValueError("the log is full")
        completed: list[Node] = []
        value, level, size = leaf_hash, 0, self._size
        while size & 1:  # the lowest subtree has the new leaf's size: merge, carry upwards
            value = node_hash(self._hashes.pop(), value)
            level += 1
            size >>= 1
            completed.append(Node(level, self._size >> level, value))
        self._hashes.append(value)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        completed: list[Node] = []
        for h in leaf_hashes:
            completed.extend(self.append(h))
        return completed

    def root(self) -> bytes:
        """MTH of the leaves so far: the edge folded from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        value = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            value = node_hash(left, value)
        return value


# --- signed tree heads ---------------------------------------------------------------------------------------------


class TreeHeadInvalid(ValueError):
    pass


@dataclass(frozen=True)
class TreeHead:
    """The log's state at ``tree_size`` entries: what its key signs."""

    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    log_id: str

    def __post_init__(self) -> None:
        for name in ("tree_size", "timestamp_ms"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_SIZE:
                raise ValueError(f"{name} must be an integer within 0..2^63-1")
        if not _is_hash(self.root_hash):
            raise ValueError("root_hash must be 32 bytes")
        if self.tree_size == 0 and self.root_hash != EMPTY_ROOT:
            raise ValueError("the root of the empty tree is SHA-256 of the empty string")
        if not isinstance(self.log_id, str) or not _LOG_ID.fullmatch(self.log_id):
            raise ValueError("log_id must be 1-128 characters of A-Z a-z 0-9 . _ : - (starting alphanumeric)")

    def canonical(self) -> bytes:
        """The signed bytes: ASCII, exactly
        ``{"format":"anss-tree-head-v1","log_id":"<id>","root_hash":"<b64url>","timestamp_ms":<n>,"tree_size":<n>}``
        — members in that (sorted) order, no whitespace, base64url without padding, integers in decimal."""
        return (f'{{"format":"{TREE_HEAD_FORMAT}","log_id":"{self.log_id}","root_hash":"{b64url(self.root_hash)}",'
                f'"timestamp_ms":{self.timestamp_ms},"tree_size":{self.tree_size}}}').encode("ascii")

    def sign(self, key: SigningKey) -> SignedTreeHead:
        """A JWS with detached payload over ``canonical()``; protected header ``{"alg","kid","typ"}``."""
        return SignedTreeHead(self, detached(key, {"typ": TREE_HEAD_FORMAT}, self.canonical()))

    @staticmethod
    def verify(signed: SignedTreeHead, keys_by_kid: dict[str, PublicKey]) -> TreeHead:
        """The tree head, if a key of ``keys_by_kid`` signed it as a tree head; raise ``TreeHeadInvalid``."""
        try:
            header = verify_detached(signed.signature, signed.head.canonical(), keys_by_kid)
        except SignatureInvalid as exc:
            raise TreeHeadInvalid(f"tree head signature: {exc}") from exc
        if header.get("typ") != TREE_HEAD_FORMAT:
            raise TreeHeadInvalid("the signature is not over a tree head")
        return signed.head


@dataclass(frozen=True)
class SignedTreeHead:
    head: TreeHead
    signature: str  # "<protected>..<signature>"

    def to_json(self) -> dict[str, Any]:
        """The export's ``tree_head`` line."""
        h = self.head
        return {"type": "tree_head", "tree_size": h.tree_size, "root_hash": b64url(h.root_hash),
                "timestamp_ms": h.timestamp_ms, "log_id": h.log_id, "signature": self.signature}

    @classmethod
    def from_json(cls, data: object) -> SignedTreeHead:
        """Parse a ``tree_head`` line (not its signature: ``TreeHead.verify`` does that)."""
        if not isinstance(data, dict) or data.get("type") != "tree_head":
            raise TreeHeadInvalid("not a tree_head object")
        root_text, signature = data.get("root_hash"), data.get("signature")
        if not isinstance(root_text, str) or not _B64URL.fullmatch(root_text) or len(root_text) != 43:
            raise TreeHeadInvalid("root_hash is not 32 bytes in base64url")
        if not isinstance(signature, str):
            raise TreeHeadInvalid("signature is not a string")
        root_hash = b64url_decode(root_text)
        if b64url(root_hash) != root_text:
            raise TreeHeadInvalid("root_hash is not in canonical base64url")
        tree_size, timestamp_ms, log_id = data.get("tree_size"), data.get("timestamp_ms"), data.get("log_id")
        if type(tree_size) is not int or type(timestamp_ms) is not int or not isinstance(log_id, str):
            raise TreeHeadInvalid("tree_size and timestamp_ms must be integers, log_id a string")
        try:
            head = TreeHead(tree_size, root_hash, timestamp_ms, log_id)
        except ValueError as exc:
            raise TreeHeadInvalid(str(exc)) from exc
        return cls(head, signature)


# --- export --------------------------------------------------------------------------------------------------------


def export_lines(entries: Sequence[bytes], heads: Sequence[SignedTreeHead], *, inclusion_proofs: bool = True,
                 consistency_proofs: bool = True) -> Iterator[str]:
    """The JSON Lines export of a whole log (docs/merkle-log.md), one string per line, without line ends.

    ``entries`` are the canonical entry bytes (``AccessRecord.canonical()``), from index 0; ``heads`` the signed
    tree heads to include, by increasing size, the last one covering exactly all entries. Inclusion proofs are
    against the last head; a consistency proof follows each head after the first.
    """
    if not heads:
        raise ValueError("an export needs at least one signed tree head")
    sizes = [s.head.tree_size for s in heads]
    if any(a >= b for a, b in itertools.pairwise(sizes)) or sizes[-1] != len(entries):
        raise ValueError("tree heads must grow strictly and the last must cover exactly the exported entries")
    log_id = heads[0].head.log_id
    if any(s.head.log_id != log_id for s in heads):
        raise ValueError("tree heads from different logs")
    texts = [_entry_text(e) for e in entries]
    leaves = [leaf_hash(e) for e in entries]
    return _export(texts, leaves, heads, log_id, inclusion_proofs, consistency_proofs)


def _entry_text(entry: bytes) -> str:
    try:
        text = entry.decode("utf-8")
        parsed = json.loads(text)
    except ValueError as exc:
        raise ValueError("an entry must be a UTF-8 JSON object") from exc
    if not isinstance(parsed, dict) or "\n" in text or "\r" in text:
        raise ValueError("an entry must be a JSON object on one line")
    return text


def _export(texts: list[str], leaves: list[bytes], heads: Sequence[SignedTreeHead], log_id: str,
            inclusion_proofs: bool, consistency_proofs: bool) -> Iterator[str]:
    def line(obj: dict[str, Any]) -> str:
        return json.dumps(obj, separators=(",", ":"))

    prover = Prover(SequenceSource(leaves), batch_level=3)  # caches n/8 subtrees: each proof is O(log n) lookups
    final = heads[-1].head.tree_size
    pending = list(heads)
    previous: TreeHead | None = None

    def emit_heads(size: int) -> Iterator[str]:
        nonlocal previous
        while pending and pending[0].head.tree_size == size:
            signed = pending.pop(0)
            yield line(signed.to_json())
            if consistency_proofs and previous is not None:
                proof = prover.consistency_proof(previous.tree_size, size)
                yield line({"type": "consistency", "old_size": previous.tree_size, "new_size": size,
                            "proof": [b64url(p) for p in proof]})
            previous = signed.head

    yield line({"type": "log", "format": EXPORT_FORMAT, "log_id": log_id})
    yield from emit_heads(0)
    for index, (text, leaf) in enumerate(zip(texts, leaves, strict=True)):
        # the entry's exact bytes sit between '"entry":' and the line's final '}'
        yield f'{{"type":"entry","index":{index},"leaf_hash":"{b64url(leaf)}","entry":{text}}}'
        if inclusion_proofs:
            proof = prover.inclusion_proof(index, final)
            yield line({"type": "inclusion", "index": index, "tree_size": final,
                        "proof": [b64url(p) for p in proof]})
        yield from emit_heads(index + 1)


__all__ = [
    "EMPTY_ROOT",
    "EXPORT_FORMAT",
    "HASH_SIZE",
    "TREE_HEAD_FORMAT",
    "CompactRange",
    "LeafSource",
    "Node",
    "Prover",
    "SequenceSource",
    "SignedTreeHead",
    "TreeHead",
    "TreeHeadInvalid",
    "consistency_proof",
    "export_lines",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]
