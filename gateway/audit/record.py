"""One access-log entry and its canonical bytes.

An entry holds who, when, why and what happened — never the personal data that flowed: the subject is a
keyed-HMAC pseudonym, the request and response bodies are SHA-256 digests. ``leaf_hash`` is the RFC 6962
leaf hash (``SHA-256(0x00 || entry)``) so the chain can later be upgraded to a Merkle tree log without
rewriting entries.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class AccessRecord:
    time: str  # RFC 3339, UTC, microseconds
    request_id: str
    method: str
    path: str
    status: int
    outcome: str  # "answered", "partial", "subject_not_found", or the refusal's error code
    latency_ms: float
    client: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    case_ref: str | None = None
    checks: tuple[str, ...] = ()
    subject: str | None = None  # keyed-HMAC pseudonym of the IDCS (or of the CIN when unresolved)
    sources: tuple[tuple[str, str], ...] = ()  # (source, status)
    request_sha256: str | None = None
    response_sha256: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> bytes:
        data = asdict(self)
        data["checks"] = list(self.checks)
        data["sources"] = [{"name": n, "status": s} for n, s in self.sources]
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x02" + previous + leaf).digest()


GENESIS = b"\x00" * 32
