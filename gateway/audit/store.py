"""The access-log store seam (``AccessLog`` protocol), what verifying it reports, and its errors.

Every implementation (SQLite, PostgreSQL) passes ``tests/audit/test_store_contract.py``. The
tree semantics are in docs/merkle-log.md; ``gateway.audit.recompute`` and ``gateway.audit.index_check`` (the
full verification) and ``gateway.audit.export`` (the JSON Lines export) are shared by all implementations, so a
store only has to provide rows, subtree hashes, tree heads and its search index in entry order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TextIO, runtime_checkable

from gateway.audit.merkle import SignedTreeHead
from gateway.audit.query import LogPage, LogQuery
from gateway.audit.record import AccessRecord
from gateway.crypto.keys import PublicKey, SigningKey

if TYPE_CHECKING:  # (the aggregates module reports with ChainBreak, defined here)
    from gateway.audit.aggregates import HourlyRow


@dataclass(frozen=True)
class ChainBreak:
    """The first entry at which the log stops verifying, and why."""

    index: int
    reason: str


class AccessLogCorrupt(RuntimeError):
    """The stored tree does not add up (tampering, or a bug): the store refuses to extend or sign it.

    Run ``anss-gateway audit verify`` to find the first bad entry."""


@runtime_checkable
class AccessLog(Protocol):
    """An append-only Merkle tree log of access records (RFC 9162 style) with signed tree heads.

    Indices are contiguous from 0. A pruned entry keeps its leaf hash (``entry`` returns ``None``), so the
    tree, its proofs and every signed head still verify. Blocking I/O never runs on the event loop.
    """

    async def open(self) -> None: ...

    async def append(self, record: AccessRecord) -> int:
        """Durably append; return the entry's index. Raise if the entry could not be written."""
        ...

    async def count(self) -> int:
        """The number of entries (the tree size), pruned ones included."""
        ...

    async def entry(self, index: int) -> bytes | None:
        """The canonical bytes of entry ``index``, or ``None`` once pruned; ``IndexError`` if there is none."""
        ...

    async def entries(self, start: int, end: int) -> list[bytes | None]:
        """Entries ``start`` .. ``end - 1`` (``None`` for pruned ones); ``IndexError`` beyond the log."""
        ...

    async def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of entries ``start`` .. ``end - 1``; ``IndexError`` beyond the log."""
        ...

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 ``PATH(index, D[tree_size])``; ``ValueError`` unless ``0 <= index < tree_size <= count``."""
        ...

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 ``PROOF(old_size, D[new_size])``; ``ValueError`` unless ``0 <= old <= new <= count``."""
        ...

    async def latest_tree_head(self) -> SignedTreeHead | None: ...

    async def tree_head(self, tree_size: int) -> SignedTreeHead | None:
        """The signed head of exactly ``tree_size`` entries, if one was issued."""
        ...

    async def issue_tree_head(self, key: SigningKey, log_id: str) -> SignedTreeHead | None:
        """Sign a head for the current size, or return ``None`` if the latest head already covers it (an empty
        log without any head gets a head of size 0).

        Atomic across processes sharing the store: at most one head per size, ever, and a new head is only
        signed after checking that the stored tree extends the latest one (else ``AccessLogCorrupt``)."""
        ...

    async def save_checkpoint(self, tree_size: int, note: str) -> str:
        """Keep ``note``, the C2SP checkpoint (signed note) of the signed head of ``tree_size`` entries, and
        return the note now kept. A head has at most one checkpoint: saving again for the same size only appends
        the signature lines the kept note lacks (cosignatures gathered later); ``ValueError`` when there is no
        such head, or ``note`` states another size or root than the head, or another checkpoint than the one
        kept (``gateway.audit.rules.merged_note``)."""
        ...

    async def checkpoint(self, tree_size: int | None = None) -> str | None:
        """The kept checkpoint note of the head of ``tree_size`` entries, or of the largest when ``None``."""
        ...

    async def verify(self, keys: Mapping[str, PublicKey] | None = None) -> ChainBreak | None:
        """Recompute everything from the entries (``gateway.audit.recompute``) and check the search index against
        them in the same pass (``gateway.audit.index_check``); the first bad index, or None.

        Tree-head signatures are checked against ``keys`` (kid → public key), else against the keys the
        store was built with; with neither, only the roots are checked."""
        ...

    async def prune(self, before: datetime) -> int:
        """Drop the payload of the oldest entries dated before ``before`` that a signed head covers, keeping
        their leaf hashes; return how many were pruned. Pruning only ever removes a prefix."""
        ...

    async def export(self, out: TextIO, *, inclusion_proofs: bool = True,
                     consistency_proofs: bool = True) -> SignedTreeHead:
        """Write the JSON Lines export (docs/merkle-log.md section 6) up to the latest signed head and return
        that head; ``ValueError`` if no head was ever issued."""
        ...

    async def search(self, query: LogQuery) -> LogPage:
        """Entries matching every filter of ``query``, newest first, a page at a time; pruned entries are not
        returned (``gateway.audit.query``; ``tests/audit/test_search_contract.py``)."""
        ...

    async def hourly(self, since: datetime, until: datetime, *, sources: bool = False) -> list[HourlyRow]:
        """The hourly aggregates (``gateway.audit.aggregates``) of the clock hours from the one holding ``since``
        to the one holding the instant before ``until``: the requests' own rows, or (``sources``) the rows per
        administration. Read off the event loop, in one short statement."""
        ...

    async def busy_subjects(self, since: datetime, until: datetime, min_clients: int, clients: Sequence[str],
                            limit: int) -> list[tuple[int, int, str, str, str]]:
        """(index, time in µs, client, purpose, subject) of the entries in ``[since, until)`` whose subject was
        looked up for a purpose by at least ``min_clients`` distinct clients among ``clients``, oldest first,
        for at most ``limit`` subjects: the citizen flag's candidates, from the search index alone."""
        ...

    async def close(self) -> None: ...
