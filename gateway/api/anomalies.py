"""``GET /v1/audit/anomalies``: the anomaly flags of the access log, for officers; and ``scan``, which reads the
entries they are computed from (the console shows the same flags).

``scan`` reads the window and the baseline before it (``lookback``) through the store's search, newest first,
a page at a time, and stops after ``MAX_SCAN`` entries (the flags then cover what was read, and say so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.audit.anomalies import Flag, detect, lookback
from gateway.audit.query import MAX_PAGE, LogHit, LogQuery, SearchableLog
from gateway.settings import AnomalySettings

MAX_SCAN = 200_000


@dataclass(frozen=True)
class Scan:
    flags: list[Flag]
    scanned: int  # entries read
    complete: bool  # False: MAX_SCAN was reached before the start of the baseline
    now: datetime


async def scan(log: SearchableLog, settings: AnomalySettings, now: datetime | None = None,
               max_entries: int = MAX_SCAN) -> Scan:
    now = now or datetime.now(UTC)
    hits: list[LogHit] = []
    cursor: int | None = None
    while True:
        page = await log.search(LogQuery(since=now - lookback(settings), limit=MAX_PAGE, cursor=cursor))
        hits.extend(page.hits)
        cursor = page.next_cursor
        if cursor is None or len(hits) >= max_entries:
            break
    return Scan(detect(hits, now, settings), len(hits), cursor is None, now)
