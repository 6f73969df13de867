"""The full verification of a stored Merkle tree log, shared by every store implementation.

A store streams its rows, in index order, with the stored subtree hashes and signed tree heads; ``recompute``
rebuilds the tree from the entries alone and compares everything stored with it. The checks, in the order the
first bad index is found:

* every signed tree head verifies (the gateway's keys, ``typ``), all name one log, dated in order of size;
* indices are contiguous from 0 (a gap is a deleted entry);
* a kept entry hashes to its stored leaf hash (a changed entry); a pruned entry (payload ``None``) comes
  before every kept one and is covered by a signed head (pruning removes the oldest entries only);
* every stored subtree hash (levels ``NODE_LEVEL`` and up) equals the recomputed one;
* the tree root stored with each entry equals the recomputed root of entries ``0 .. index`` — this names the
  exact entry where rows were moved, inserted or rewritten with matching leaf hashes;
* every signed head's root equals the recomputed root of its size (a forger who also rewrote the stored
  roots and subtrees is still caught here, located between two heads);
* nothing is missing at the end: the log is at least as long as its largest signed head and no stored subtree
  reaches past it (truncation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway.audit.merkle import EMPTY_ROOT, HASH_SIZE, CompactRange, SignedTreeHead, TreeHead, TreeHeadInvalid
from gateway.audit.merkle import leaf_hash as merkle_leaf_hash
from gateway.audit.store import ChainBreak
from gateway.crypto.keys import PublicKey, b64url

NODE_LEVEL = 6  # subtrees of 2^6 = 64 leaves and more are stored; smaller ones are hashed from the leaves

HeadRow = tuple[Any, Any, Any, Any, Any]  # (tree_size, root_hash, timestamp_ms, log_id, signature) as stored
Row = tuple[Any, Any, Any, Any]  # (index, entry or None, leaf_hash, tree_root) as stored


def expected_node_count(size: int) -> int:
    """How many complete subtrees of ``NODE_LEVEL`` levels and up a tree of ``size`` leaves has."""
    return sum(size >> level for level in range(NODE_LEVEL, size.bit_length()))


def head_from_row(row: HeadRow) -> SignedTreeHead:
    """A stored tree head; ``ValueError`` if the row cannot be one."""
    tree_size, root_hash, timestamp_ms, log_id, signature = row
    if not isinstance(root_hash, bytes) or not isinstance(signature, str):
        raise ValueError("a tree head row holds the wrong types")
    return SignedTreeHead(TreeHead(tree_size, root_hash, timestamp_ms, log_id), signature)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def check_heads(rows: Sequence[HeadRow], keys: Mapping[str, PublicKey] | None) -> tuple[
        dict[int, SignedTreeHead], ChainBreak | None]:
    """The heads by size, and the first problem among them (at the first entry the bad head newly covers)."""
    heads: dict[int, SignedTreeHead] = {}
    previous: TreeHead | None = None
    for row in sorted(rows, key=lambda r: r[0] if isinstance(r[0], int) else -1):
        start = previous.tree_size if previous else 0
        try:
            signed = head_from_row(row)
        except ValueError as exc:
            return heads, ChainBreak(start, f"the tree head row of size {row[0]!r} is malformed: {exc}")
        head = signed.head
        if previous is not None and head.log_id != previous.log_id:
            return heads, ChainBreak(start, f"the signed tree head of size {head.tree_size} names another log "
                                            f"({head.log_id!r}, not {previous.log_id!r})")
        if previous is not None and head.timestamp_ms < previous.timestamp_ms:
            return heads, ChainBreak(start, f"the signed tree head of size {head.tree_size} is dated before the "
                                            f"head of size {previous.tree_size}")
        if keys is not None:
            try:
                TreeHead.verify(signed, dict(keys))
            except TreeHeadInvalid as exc:
                return heads, ChainBreak(start, f"the signed tree head of size {head.tree_size} does not verify "
                                                f"against the gateway's keys ({exc})")
        heads[head.tree_size] = signed
        previous = head
    return heads, None


def recompute(rows: Iterable[Row], head_rows: Sequence[HeadRow], keys: Mapping[str, PublicKey] | None, *,
              stored_node: Callable[[int, int], object], stored_node_count: int,
              first_node_beyond: Callable[[int], tuple[int, int] | None]) -> ChainBreak | None:
    """The first bad index of a stored log, or ``None`` if everything recomputes (see the module docstring).

    ``stored_node(level, index)`` is the stored subtree hash (or ``None``), ``stored_node_count`` how many are
    stored, ``first_node_beyond(size)`` a stored ``(level, index)`` covering an entry at ``size`` or later.
    """
    heads, head_break = check_heads(head_rows, keys)
    roots = {size: signed.head.root_hash for size, signed in heads.items()}
    last = max(roots, default=0)
    if 0 in roots and roots[0] != EMPTY_ROOT:  # TreeHead refuses it already; kept for clarity
        return ChainBreak(0, "the signed tree head of size 0 is not the empty tree")
    edge = CompactRange()
    expected, good, kept = 0, 0, -1
    for index, entry, leaf, tree_root in rows:
        if head_break is not None and head_break.index <= expected:
            return head_break
        if index != expected:
            return ChainBreak(expected, f"entry {expected} is missing (the next stored index is {index})")
        if isinstance(entry, str) and _is_hash(leaf) and merkle_leaf_hash(entry.encode()) != leaf:
            return ChainBreak(index, "entry content does not match its leaf hash (altered)")
        if not _is_hash(leaf) or not _is_hash(tree_root) or not (entry is None or isinstance(entry, bytes)):
            return ChainBreak(index, "not stored as written (a column's type or size changed)")
        if entry is None:
            if kept >= 0:
                return ChainBreak(index, f"payload removed out of order: pruning removes only the oldest entries, "
                                         f"and entry {kept} before it is kept")
            if index >= last:
                return ChainBreak(index, "payload removed, but no signed tree head covers the entry")
        else:
            kept = index if kept < 0 else kept
            if merkle_leaf_hash(entry) != leaf:
                return ChainBreak(index, "entry content does not match its leaf hash (altered)")
        for node in edge.append(leaf):
            if node.level >= NODE_LEVEL and stored_node(node.level, node.index) != node.hash:
                first = node.index << node.level
                what = "is missing" if stored_node(node.level, node.index) is None else "does not match the entries"
                return ChainBreak(first, f"the stored hash of the subtree over entries {first}..{index} {what}")
        root = edge.root()
        if root != tree_root:
            return ChainBreak(index, "the tree root stored with this entry does not follow from the entries up to "
                                     "it (an entry was moved, inserted or rewritten here)")
        if index + 1 in roots:
            if roots[index + 1] != root:
                return ChainBreak(good, f"entries {good}..{index} do not match the signed tree head of size "
                                        f"{index + 1}")
            good = index + 1
        expected += 1
    if head_break is not None:
        return head_break
    return _truncation(expected, last, stored_node_count, first_node_beyond)


def _truncation(size: int, last: int, stored_node_count: int,
                first_node_beyond: Callable[[int], tuple[int, int] | None]) -> ChainBreak | None:
    after = f"truncated after index {size - 1}" if size else "truncated: no entry is left"
    if last > size:
        return ChainBreak(size, f"{after}: the signed tree head of size {last} covers entries up to {last - 1}")
    beyond = first_node_beyond(size)
    if beyond is not None:
        level, index = beyond
        return ChainBreak(size, f"{after}: a stored subtree covers entries up to {((index + 1) << level) - 1}")
    if stored_node_count != expected_node_count(size):
        return ChainBreak(size, f"{stored_node_count} subtree hashes are stored where {size} entries have "
                                f"{expected_node_count(size)}")
    return None


def describe(head: SignedTreeHead) -> str:
    """One line for a person: size, root and time of a signed head."""
    h = head.head
    return f"size {h.tree_size}, root {b64url(h.root_hash)}, timestamp_ms {h.timestamp_ms}, log {h.log_id}"
