"""What the console checks before it says "verified": a tree head's signature, an entry's inclusion proof
against the latest signed tree head, and the keys it trusts for both (docs/merkle-log.md sections 3 and 4).

The keys are the gateway's published keys and every key its key store ever held (tree heads outlive key
rotation), read off the event loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.audit.merkle import SignedTreeHead, TreeHead, TreeHeadInvalid, verify_inclusion
from gateway.audit.store import AccessLog
from gateway.crypto.keys import PublicKey, b64url, b64url_decode


@dataclass(frozen=True)
class HeadView:
    tree_size: int
    root_hash: str  # base64url
    signed_at: datetime
    kid: str
    valid: bool
    reason: str = ""


@dataclass(frozen=True)
class Inclusion:
    """``verified``, ``pending`` (no signed head covers the entry yet), ``failed`` or ``head_invalid``."""

    status: str
    head: HeadView | None = None
    hashes: int = 0
    wait_s: int = 0

    @property
    def tree_size(self) -> int:
        return self.head.tree_size if self.head else 0

    @property
    def signed_at(self) -> datetime | None:
        return self.head.signed_at if self.head else None

    @property
    def kid(self) -> str:
        return self.head.kid if self.head else ""

    @property
    def root_hash(self) -> str:
        return self.head.root_hash if self.head else ""

    @property
    def reason(self) -> str:
        return self.head.reason if self.head else ""


def _kid(signed: SignedTreeHead) -> str:
    try:
        header = json.loads(b64url_decode(signed.signature.split(".")[0]))
    except (ValueError, IndexError):
        return "?"
    return str(header.get("kid", "?")) if isinstance(header, dict) else "?"


def head_view(signed: SignedTreeHead, keys: dict[str, PublicKey]) -> HeadView:
    head = signed.head
    try:
        TreeHead.verify(signed, keys)
        valid, reason = True, ""
    except TreeHeadInvalid as exc:
        valid, reason = False, str(exc)
    return HeadView(head.tree_size, b64url(head.root_hash), datetime.fromtimestamp(head.timestamp_ms / 1000, UTC),
                    _kid(signed), valid, reason)


async def inclusion(access_log: AccessLog, index: int, leaf: bytes, keys: dict[str, PublicKey],
                    interval_s: float) -> Inclusion:
    """Whether the entry whose leaf hash is ``leaf`` sits at ``index`` under the latest signed tree head."""
    signed = await access_log.latest_tree_head()
    if signed is None or index >= signed.head.tree_size:
        return Inclusion("pending", head_view(signed, keys) if signed else None, wait_s=round(interval_s) + 1)
    view = head_view(signed, keys)
    if not view.valid:
        return Inclusion("head_invalid", view)
    proof = await access_log.inclusion_proof(index, signed.head.tree_size)
    ok = verify_inclusion(leaf, index, signed.head.tree_size, proof, signed.head.root_hash)
    return Inclusion("verified" if ok else "failed", view, hashes=len(proof))
