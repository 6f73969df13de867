"""One access-log entry and its canonical bytes.

An entry holds who, when, why and what happened — never the personal data that flowed: the subject is a
keyed-HMAC pseudonym, the request and response bodies are keyed-HMAC digests (``request_hmac``,
``response_hmac``; entries written before them hold plain SHA-256 digests in ``request_sha256`` and
``response_sha256``, which are null from then on). ``leaf_hash`` is the RFC 9162
leaf hash (``SHA-256(0x00 || entry)``) of the Merkle tree log (docs/merkle-log.md).

The canonical bytes are what the log commits to, and the log never re-serialises a stored entry. A field
added to ``AccessRecord`` after the first release is written only when it holds a value (not ``None``, not
empty): adding a field never changes the bytes of entries that do not use it. (``chain_hash`` and
``GENESIS`` belong to the hash chain of schema v1, kept to check a v1 log before migrating it.)
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
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
    consent_id: str | None = None  # the consent a consent-based query or a consent change rests on
    # keyed digests of the bodies (Pseudonymiser.body_digest). They replace the plain SHA-256 digests above, which
    # new entries leave null: a plain digest of a predictable body gives the identifier in it back.
    request_hmac: str | None = None
    response_hmac: str | None = None
    # keyed-HMAC pseudonyms of the IDCS of every other person whose data was read for this request (spouses,
    # children), sorted: each of them finds the access in their own citizen access log
    co_subjects: tuple[str, ...] = ()

    def canonical(self) -> bytes:
        """Sorted-key JSON (orjson, no whitespace, UTF-8); see the module docstring for added fields.

        The same bytes as ``orjson.dumps(dataclasses.asdict(self))`` with the two conversions below, without
        ``asdict``'s deep copy (this runs once per request)."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in FIRST_RELEASE_FIELDS and value in (None, "", [], (), {}):
                continue
            data[f.name] = asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
        data["checks"] = list(self.checks)
        if self.co_subjects:
            data["co_subjects"] = list(self.co_subjects)
        data["sources"] = [{"name": n, "status": s} for n, s in self.sources]
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


CITIZEN_ACTOR = "citizen"  # the `client` of a citizen's own request (GET /v1/citizen/access-log)

# The members every entry has carried since the first release, always written (null when unset).
FIRST_RELEASE_FIELDS = frozenset({
    "time", "request_id", "method", "path", "status", "outcome", "latency_ms", "client", "purpose", "legal_basis",
    "case_ref", "checks", "subject", "sources", "request_sha256", "response_sha256", "detail",
})


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x02" + previous + leaf).digest()


GENESIS = b"\x00" * 32
