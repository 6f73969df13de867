"""The anomaly scan over a real store (SQLite and PostgreSQL, as in the search contract): each client, the
citizens and the entries without a client are read with budgets of their own, so no one's traffic — least of
all that of callers without credentials — can push anyone else's entries out of the scan.

The budgets are reduced (a few hundred entries instead of 200 000 and 50 000) so the floods stay small."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gateway.api.anomalies import scan
from gateway.audit import AccessLog, AccessRecord
from gateway.audit.anomalies import Kind
from gateway.audit.record import CITIZEN_ACTOR
from gateway.config.settings import AnomalySettings
from tests.audit.store_support import StoreFactory

NOW = datetime(2026, 4, 15, 15, 0, tzinfo=UTC)  # a Wednesday, 16:00 in Casablanca: working hours
S = AnomalySettings()
ASD, HOUSING = "anss.asd", "mhpv.housing"
CLIENTS = (ASD, HOUSING, "dgssi.officer")


async def add(store: AccessLog, time: datetime, client: str | None, status: int = 200,
              outcome: str = "answered") -> int:
    record = AccessRecord(time=time.isoformat(timespec="microseconds"), request_id=f"r-{time.timestamp()}",
                          method="POST", path="/v1/verifications", status=status, outcome=outcome, latency_ms=2.0,
                          client=client, purpose="asd.eligibility" if client else None, checks=("identity",))
    return await store.append(record)


async def test_requests_without_credentials_cannot_blind_the_flags(store_factory: StoreFactory) -> None:
    store = await store_factory()
    burst_at = NOW - timedelta(hours=2)
    burst = [await add(store, burst_at + timedelta(seconds=10 * i), HOUSING, 403, "forbidden_purpose")
             for i in range(10)]
    flood_at = NOW - timedelta(hours=1)
    flood = [await add(store, flood_at + timedelta(seconds=i), None, 401, "invalid_assertion") for i in range(500)]
    found = await scan(store, S, CLIENTS, NOW, max_entries=300, max_unattributed=200)
    [housing] = [f for f in found.flags if f.kind is Kind.REFUSAL_BURST]
    assert housing.clients == (HOUSING,) and housing.entries == tuple(burst)
    [anonymous] = [f for f in found.flags if f.kind is Kind.ANONYMOUS_REFUSALS]
    assert anonymous.clients == () and anonymous.count == 200  # the newest 200: the budget
    assert anonymous.entries == tuple(flood[300:400]) and anonymous.end == flood_at + timedelta(seconds=499)
    assert found.scanned == 10 + 200 and found.truncated == () and found.unattributed_truncated
    assert not found.complete


async def test_each_client_is_read_with_a_budget_of_its_own(store_factory: StoreFactory) -> None:
    store = await store_factory()
    burst = [await add(store, NOW - timedelta(hours=3, seconds=-i), HOUSING, 403, "forbidden_purpose")
             for i in range(10)]
    for i in range(450):  # a busy client, newer than the burst: more than its budget
        await add(store, NOW - timedelta(minutes=90, seconds=-i), ASD)
    citizens = [await add(store, NOW - timedelta(minutes=30, seconds=-i), CITIZEN_ACTOR, 401, "citizen_token_invalid")
                for i in range(10)]
    await add(store, NOW - timedelta(minutes=20), "removed.client", 403, "forbidden_check")
    found = await scan(store, replace(S, volume_min_requests=1_000), CLIENTS, NOW, max_entries=300)
    bursts = {f.clients: f.entries for f in found.flags if f.kind is Kind.REFUSAL_BURST}
    assert bursts == {(HOUSING,): tuple(burst), (CITIZEN_ACTOR,): tuple(citizens)}
    assert found.truncated == (ASD,) and not found.unattributed_truncated and not found.complete
    assert found.scanned == 10 + 400 + 10  # whole pages of 200: the busy client's budget is reached at 400


async def test_a_quiet_log_is_scanned_completely(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await add(store, NOW - timedelta(hours=1), ASD)
    await add(store, NOW - timedelta(hours=1), None, 404, "not_found")
    found = await scan(store, S, CLIENTS, NOW)
    assert found.flags == [] and found.complete and found.scanned == 2 and found.truncated == ()
