"""The anomaly view from the hourly aggregates (``gateway.audit.anomaly_view``) on every store: the same flags as
the full scan (``gateway.api.anomalies.scan``, the reference) over a log with every kind of anomaly, while it
reads only a small part of the entries; aggregated anonymous refusals count by their ``count``."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gateway.api.anomalies import scan
from gateway.audit import AccessLog, AccessRecord
from gateway.audit.anomalies import Kind
from gateway.audit.anomaly_view import view
from gateway.audit.record import CITIZEN_ACTOR
from gateway.config.settings import AnomalySettings
from tests.audit.store_support import StoreFactory

NOW = datetime(2026, 4, 15, 15, 0, tzinfo=UTC)  # a Wednesday, 16:00 in Casablanca
S = AnomalySettings()
ASD, HOUSING, AMO = "anss.asd", "mhpv.housing", "cnss.amo"
CLIENTS = (ASD, HOUSING, AMO, "dgssi.officer")


def rec(at: datetime, client: str | None, status: int = 200, outcome: str = "answered",
        purpose: str | None = "asd.eligibility", subject: str | None = None,
        detail: dict[str, object] | None = None) -> AccessRecord:
    return AccessRecord(time=at.isoformat(timespec="microseconds"), request_id=f"r-{at.timestamp()}-{client}",
                        method="POST", path="/v1/verifications", status=status, outcome=outcome, latency_ms=12.0,
                        client=client, purpose=purpose if client else None, subject=subject, detail=detail or {})


def history() -> list[AccessRecord]:
    """15 days of working-hour traffic, then in the last 24 hours one of each anomaly."""
    rng = random.Random(7)
    out = []
    for day in range(15, 0, -1):
        for client, per_day in ((ASD, 60), (HOUSING, 30), (AMO, 20)):
            for _ in range(per_day):
                at = (NOW - timedelta(days=day)).replace(hour=9) + timedelta(seconds=rng.randrange(8 * 3600))
                out.append(rec(at, client, subject=f"{rng.randrange(500):064x}"))
    spike = NOW - timedelta(hours=5)  # 10:00 UTC, 11:00 local: 400 requests in one hour
    out += [rec(spike + timedelta(seconds=8 * i), ASD, subject=f"{i:064x}") for i in range(400)]
    night = NOW.replace(hour=1)  # 02:00 local: outside working hours
    out += [rec(night + timedelta(minutes=i), HOUSING) for i in range(7)]
    burst = NOW - timedelta(hours=3, minutes=2)
    out += [rec(burst + timedelta(seconds=15 * i), AMO, 403, "forbidden_purpose") for i in range(12)]
    out += [rec(NOW - timedelta(hours=2) + timedelta(seconds=20 * i), CITIZEN_ACTOR, 401, "citizen_token_invalid")
            for i in range(11)]
    knock = NOW - timedelta(hours=1, minutes=30)
    out += [rec(knock + timedelta(seconds=i), None, 401, "invalid_assertion") for i in range(40)]
    out += [rec(knock + timedelta(minutes=1), None, 429, "refusals_aggregated", detail={"count": 90})]
    citizen = "c" * 64
    out += [rec(NOW - timedelta(hours=4, minutes=i), client, subject=citizen) for i, client in
            enumerate((ASD, HOUSING, AMO))]
    out += [rec(NOW - timedelta(hours=6) + timedelta(minutes=i), HOUSING, purpose="housing.subsidy")
            for i in range(3)]
    out += [rec(NOW - timedelta(hours=7), "removed.client", 403, "forbidden_check")]
    return out


async def filled(store: AccessLog, records: list[AccessRecord]) -> None:
    for start in range(0, len(records), 256):
        await asyncio.gather(*(store.append(r) for r in records[start:start + 256]))


async def test_the_view_gives_the_flags_of_the_full_scan(store_factory: StoreFactory) -> None:
    store = await store_factory()
    records = history()
    await filled(store, records)
    reference = await scan(store, S, CLIENTS, NOW)
    fast = await view(store, S, CLIENTS, NOW)
    assert {f.kind for f in reference.flags} == set(Kind), "the fixture raises every kind of flag"
    assert [f.to_json() for f in fast.flags] == [f.to_json() for f in reference.flags]
    assert fast.complete and fast.scanned < reference.scanned / 3, (fast.scanned, reference.scanned)
    [anonymous] = [f for f in fast.flags if f.kind is Kind.ANONYMOUS_REFUSALS]
    assert anonymous.count == 40 + 90, "the aggregated entry counts by its count"


async def test_without_anomalies_the_view_reads_almost_nothing(store_factory: StoreFactory) -> None:
    store = await store_factory()
    quiet = [r for r in history() if datetime.fromisoformat(r.time) < NOW - timedelta(hours=24)]
    await filled(store, quiet)
    found = await view(store, S, CLIENTS, NOW - timedelta(hours=25) + timedelta(hours=1))
    reference = await scan(store, S, CLIENTS, NOW - timedelta(hours=25) + timedelta(hours=1))
    assert [f.to_json() for f in found.flags] == [f.to_json() for f in reference.flags]
    assert found.scanned <= 300


async def test_the_refused_entries_read_are_bounded(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await filled(store, [rec(NOW - timedelta(hours=1) + timedelta(seconds=i), None, 401, "invalid_assertion")
                         for i in range(700)])
    found = await view(store, replace(S, anonymous_refusals=50), CLIENTS, NOW, max_unattributed=400)
    assert found.unattributed_truncated and not found.complete
    [anonymous] = [f for f in found.flags if f.kind is Kind.ANONYMOUS_REFUSALS]
    assert anonymous.count == 400, "the newest 400: the budget"
