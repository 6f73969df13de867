"""Whether the access log's signed tree heads kept the signing cadence (docs/merkle-log.md section 5).

A running gateway signs a head as soon as the first entry of an empty log is written, and then whenever the log
has grown and either ``tree_head_interval_s`` have passed since the latest head or ``tree_head_max_entries``
entries are unsigned; it signs a last head when it stops. So unsigned entries are only ever a short tail: the
head covering them is due at the latest of the first unsigned entry's time and the latest head's time plus the
interval — or earlier, when the ``max_entries``-th unsigned entry was written. ``late_heads`` says, as one line,
when that moment is more than ``slack_s`` before ``now``: entries with no head at all, or a latest head older than
the cadence allows while entries follow it — what is left when heads are deleted or a tail cut with its heads.
Pure: the caller reads the times of the entries from the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.audit.merkle import TreeHead


@dataclass(frozen=True)
class Cadence:
    """The configured cadence (``[audit]``) and the slack a verifier allows (poll rounds, clocks, a slow disk)."""

    interval_s: float
    max_entries: int
    slack_s: float = 60.0


def entry_time(entry: bytes | None) -> float | None:
    """The ``time`` of a stored entry, in POSIX seconds; ``None`` if it has none that can be read."""
    if entry is None:
        return None
    try:
        value = json.loads(entry).get("time")
        return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None
    except (ValueError, AttributeError, TypeError):
        return None


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def late_heads(count: int, latest: TreeHead | None, first_unsigned: float | None, cadence: Cadence, now: float, *,
               at_max_entries: float | None = None) -> str | None:
    """Why the unsigned tail breaks the cadence at ``now``, or ``None``.

    ``first_unsigned`` is the time of the first entry no head covers, ``at_max_entries`` the time of the
    ``max_entries``-th one (when there are that many)."""
    signed = latest.tree_size if latest is not None else 0
    unsigned = count - signed
    if unsigned <= 0:
        return None
    allowed = f"tree_head_interval_s {cadence.interval_s:g}, tree_head_max_entries {cadence.max_entries}, " \
              f"{cadence.slack_s:g} s allowed"
    if latest is None:
        if first_unsigned is None:
            return f"{count} entries and no signed tree head, and the first entry has no readable time"
        if now > first_unsigned + cadence.slack_s:
            return (f"{count} entries and no signed tree head: the first, dated {_when(first_unsigned)}, should "
                    f"have been signed at once ({cadence.slack_s:g} s allowed) — heads deleted, or a log "
                    "written without the gateway")
        return None
    head_time = latest.timestamp_ms / 1000
    due = max(first_unsigned if first_unsigned is not None else head_time, head_time + cadence.interval_s)
    if at_max_entries is not None:
        due = min(due, max(at_max_entries, head_time))
    if now <= due + cadence.slack_s:
        return None
    first = f", the first dated {_when(first_unsigned)}" if first_unsigned is not None else ""
    return (f"the latest signed tree head (size {signed}, signed {_when(head_time)}) is older than the cadence "
            f"allows: {unsigned} entries follow it{first}, and a head was due by {_when(due)} ({allowed}) — heads "
            "deleted above it, or the signer stopped without signing")
