"""Walking a JSON document for what must never be in a citizen's answer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

# members of an access-log entry (or of anything internal) that a citizen's answer never holds
INTERNAL_KEYS = frozenset({
    "request_id", "request_sha256", "response_sha256", "request_hmac", "response_hmac", "latency_ms", "sources",
    "detail", "subject", "status_code",
    "method", "path", "client", "kid", "jti", "withheld", "reason", "decision", "index", "leaf_hash", "citizen",
    "granted_by", "revoked_by", "revoked_reason", "error", "pseudonym",
})


def walk(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) for every member name (as ``<path>/#key``) and every scalar of a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{where}/#key", key
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")
    else:
        yield where, node


def assert_nothing_internal(document: Any, secrets: Iterable[str]) -> int:
    """No internal member name anywhere, and none of ``secrets`` (ids, digests, pseudonyms, identifiers) in
    any key or value, even as a substring. Returns how many values were looked at."""
    secrets = [s for s in secrets if s]
    seen = 0
    for where, value in walk(document):
        seen += 1
        if where.endswith("/#key"):
            assert value not in INTERNAL_KEYS, f"internal member {value!r} at {where}"
        text = str(value)
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaks at {where}: {text!r}"
    return seen
