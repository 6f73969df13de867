"""The rules every access-log store applies when it writes the tree, whatever its database.

A store calls them under its log's write lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock):

* ``catch_up_range`` / ``caught_up`` / ``check_edge``: the right edge (compact range) a writer kept from its
  last commit is extended by the leaves another process appended meanwhile, or rebuilt, and must reproduce
  the root stored with the last entry — else the store refuses to extend the tree;
* ``size_to_sign`` / ``check_extends`` / ``head_timestamp``: when a new tree head may be signed (the log grew;
  never shorter than a signed head; the stored tree extends the latest head; one log id; time never goes
  back), docs/merkle-log.md section 5;
* ``dated_before`` / ``prune_cut``: which oldest entries retention may prune (section 9);
* ``merged_note``: what a head's kept checkpoint note becomes when a note (with cosignatures) is saved for it:
  only ever the same checkpoint with more signature lines (section 13).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from gateway.audit.checkpoint import CheckpointError, merge_signatures, parse_checkpoint, parse_note
from gateway.audit.merkle import CompactRange, SignedTreeHead, verify_consistency
from gateway.audit.store import AccessLogCorrupt

CATCH_UP_LIMIT = 4096  # entries another process appended that a writer reads rather than rebuilding its edge


def catch_up_range(cached: CompactRange | None, size: int) -> tuple[int, int] | None:
    """The leaves to read to bring ``cached`` to ``size`` when that beats rebuilding the edge, else ``None``."""
    if cached is not None and cached.size < size <= cached.size + CATCH_UP_LIMIT:
        return cached.size, size
    return None


def caught_up(cached: CompactRange | None, size: int, root: bytes,
              leaves: Iterable[bytes] | None = None) -> CompactRange | None:
    """``cached`` extended by ``leaves`` if it then describes the stored tree (``size`` leaves whose last
    entry stores ``root``); ``None``: rebuild the edge from the store."""
    if cached is None:
        return None
    edge = CompactRange(cached.size, cached.hashes)
    if leaves is not None:
        try:
            edge.extend(leaves)
        except ValueError:
            return None
    return edge if edge.size == size and edge.root() == root else None


def check_edge(edge: CompactRange, root: bytes) -> CompactRange:
    """A rebuilt edge, if it reproduces the root stored with the last entry; else ``AccessLogCorrupt``."""
    if edge.root() != root:
        raise AccessLogCorrupt(f"the stored tree does not add up at entry {edge.size - 1}: run "
                               "`anss-gateway audit verify`")
    return edge


def size_to_sign(latest: SignedTreeHead | None, size: int, log_id: str) -> int | None:
    """The size of the head to sign now (``size``), or ``None`` when the latest head already covers it (an
    empty log without any head gets one of size 0). Refuses a log shorter than a signed head, or another
    log's id."""
    old = latest.head.tree_size if latest else 0
    if size < old:
        raise AccessLogCorrupt(f"the log has {size} entries but a signed tree head covers {old}: truncated; run "
                               "`anss-gateway audit verify`")
    if size == old and latest is not None:
        return None
    if latest is not None and latest.head.log_id != log_id:
        raise ValueError(f"this log's tree heads are for log {latest.head.log_id!r}, not {log_id!r}")
    return size


def check_extends(latest: SignedTreeHead | None, size: int, root: bytes, proof: list[bytes]) -> None:
    """``AccessLogCorrupt`` unless the stored tree (``size``, ``root``) extends the latest signed head, by the
    consistency ``proof`` read from the store."""
    if latest is None:
        return
    old = latest.head.tree_size
    if not verify_consistency(old, size, latest.head.root_hash, root, proof):
        raise AccessLogCorrupt(f"the stored tree no longer extends the signed tree head of size {old}: run "
                               "`anss-gateway audit verify`")


def head_timestamp(now_ms: int, latest: SignedTreeHead | None) -> int:
    """A new head's time: now, never before the latest head's."""
    return max(now_ms, latest.head.timestamp_ms if latest else 0)


def dated_before(entry: bytes, before: datetime) -> bool:
    """Whether the entry's ``time`` is before ``before``; an entry without a readable time is never pruned."""
    try:
        value = orjson.loads(entry).get("time")
        moment = datetime.fromisoformat(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) < before


def prune_cut(rows: Iterable[tuple[int, bytes | None]], first: int, before: datetime) -> int:
    """Where pruning stops among ``rows`` (index, entry), read in order from ``first``: the index of the first
    kept entry not dated before ``before`` (pruning only ever removes a prefix)."""
    cut = first
    for idx, entry in rows:
        if entry is not None and not dated_before(entry, before):
            break
        cut = idx + 1
    return cut


@dataclass(frozen=True, slots=True)
class KeptNote:
    """The checkpoint note to keep for a head, and whether it differs from the one kept."""

    note: str
    changed: bool


def merged_note(head: SignedTreeHead, kept: str | None, note: str) -> KeptNote:
    """The note to keep for ``head`` when ``note`` is saved: ``note`` if none was ``kept``, else the kept note
    with the signature lines of ``note`` it lacks appended. ``ValueError`` if ``note`` is not a checkpoint of
    ``head`` (its size and root) or states another checkpoint than the kept note."""
    try:
        checkpoint = parse_checkpoint(parse_note(note).text)
        if (checkpoint.size, checkpoint.root_hash) != (head.head.tree_size, head.head.root_hash):
            raise ValueError(f"the note states size {checkpoint.size} and another root than the tree head of size "
                             f"{head.head.tree_size}")
        merged = note if kept is None else merge_signatures(kept, note)
    except CheckpointError as exc:
        raise ValueError(f"not a checkpoint of the tree head of size {head.head.tree_size}: {exc}") from exc
    return KeptNote(merged, merged != kept)
