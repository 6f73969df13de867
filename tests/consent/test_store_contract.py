"""The consent-store contract, run against every implementation (see conftest.py: ``consents``)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from gateway.policy.consent import Consent, ConsentGrant, ConsentStore, Refusal, SqliteConsentStore
from gateway.policy.consent.postgres import PostgresConsentStore
from tests.audit.pg_support import dba, fresh_schema_async
from tests.consent.conftest import Backend

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CITIZEN = hashlib.sha256(b"citizen-1").hexdigest()
NEIGHBOUR = hashlib.sha256(b"citizen-2").hexdigest()
GRANTEE, PURPOSE = "mhpv.housing", "partner.social-housing"


def grant(**over: object) -> ConsentGrant:
    values: dict[str, object] = {
        "citizen": CITIZEN, "grantee": GRANTEE, "purpose": PURPOSE, "checks": ("identity", "household"),
        "valid_from": NOW - DAY, "valid_until": NOW + 30 * DAY, "evidence": "form ASD-12, Rabat office, file 2026/123",
        "granted_by": GRANTEE, "request_id": uuid.uuid4().hex,
    }
    values.update(over)
    return ConsentGrant(**values)  # type: ignore[arg-type]


async def find(store: ConsentStore, at: datetime = NOW, checks: tuple[str, ...] = ("identity",),
               citizen: str = CITIZEN, grantee: str = GRANTEE, purpose: str = PURPOSE) -> Consent | Refusal:
    return await store.find_valid(citizen, grantee, purpose, at, checks)


def refused(found: Consent | Refusal, reason: str) -> Refusal:
    assert isinstance(found, Refusal) and found.reason == reason, found
    return found


async def test_is_a_consent_store(consents: Backend) -> None:
    assert isinstance(await consents.new(), ConsentStore)


async def test_grant_then_get_returns_what_was_recorded(consents: Backend) -> None:
    store = await consents.new()
    given = grant(valid_from=datetime(2026, 2, 28, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    consent = await store.grant(given)
    assert uuid.UUID(consent.consent_id).version == 4
    assert (consent.citizen, consent.grantee, consent.purpose, consent.checks) == (
        CITIZEN, GRANTEE, PURPOSE, ("identity", "household"))
    assert consent.valid_from == datetime(2026, 2, 28, 12, 0, tzinfo=UTC) and consent.valid_from.tzinfo == UTC
    assert consent.evidence == given.evidence and consent.request_id == given.request_id
    assert consent.revoked_at is None and consent.status(NOW) == "active"
    assert await store.get(consent.consent_id) == consent
    assert await store.get(str(uuid.uuid4())) is None


async def test_each_grant_is_a_new_consent(consents: Backend) -> None:
    store = await consents.new()
    first, second = await store.grant(grant()), await store.grant(grant())
    assert first.consent_id != second.consent_id


async def test_list_for_a_citizen_only_oldest_first(consents: Backend) -> None:
    store = await consents.new()
    mine = [await store.grant(grant(purpose=f"p{i}")) for i in range(3)]
    await store.grant(grant(citizen=NEIGHBOUR))
    assert [c.consent_id for c in await store.list_for(CITIZEN)] == [c.consent_id for c in mine]
    assert await store.list_for(hashlib.sha256(b"nobody").hexdigest()) == []


async def test_a_valid_consent_is_found(consents: Backend) -> None:
    store = await consents.new()
    consent = await store.grant(grant())
    assert await find(store, checks=("identity", "household")) == consent
    assert await find(store, checks=()) == consent


async def test_no_consent_at_all_is_missing(consents: Backend) -> None:
    store = await consents.new()
    assert refused(await find(store), "missing").consent is None


async def test_another_grantee_or_purpose_or_citizen_does_not_count(consents: Backend) -> None:
    store = await consents.new()
    await store.grant(grant())
    assert refused(await find(store, grantee="other.partner"), "missing").consent is None
    assert refused(await find(store, purpose="partner.second-programme"), "missing").consent is None
    assert refused(await find(store, citizen=NEIGHBOUR), "missing").consent is None


async def test_revocation_holds_at_once(consents: Backend) -> None:
    store = await consents.new()
    consent = await store.grant(grant())
    revocation = await store.revoke(consent.consent_id, "withdrawn by the citizen", "anss.office", at=NOW)
    assert revocation is not None and revocation.changed
    assert revocation.consent.revoked_at == NOW and revocation.consent.revoked_reason == "withdrawn by the citizen"
    assert revocation.consent.revoked_by == "anss.office" and revocation.consent.status(NOW) == "revoked"
    assert refused(await find(store), "revoked").consent == revocation.consent
    assert await store.get(consent.consent_id) == revocation.consent


async def test_a_consent_is_revoked_once(consents: Backend) -> None:
    store = await consents.new()
    consent = await store.grant(grant())
    first = await store.revoke(consent.consent_id, "first", "a", at=NOW)
    again = await store.revoke(consent.consent_id, "second", "b", at=NOW + DAY)
    assert first is not None and again is not None and not again.changed
    assert again.consent == first.consent and again.consent.revoked_reason == "first"


async def test_revoking_an_unknown_consent_is_none(consents: Backend) -> None:
    assert await (await consents.new()).revoke(str(uuid.uuid4()), "reason", "a") is None


@pytest.mark.parametrize("reason", ["", "   ", "x" * 201, "line\nbreak"])
async def test_a_revocation_needs_a_reason(consents: Backend, reason: str) -> None:
    store = await consents.new()
    consent = await store.grant(grant())
    with pytest.raises(ValueError, match="reason"):
        await store.revoke(consent.consent_id, reason, "a")
    assert (await store.get(consent.consent_id)) == consent


async def test_the_window_is_from_inclusive_until_exclusive(consents: Backend) -> None:
    store = await consents.new()
    consent = await store.grant(grant(valid_from=NOW, valid_until=NOW + DAY))
    assert await find(store, at=NOW) == consent
    assert await find(store, at=NOW + DAY - timedelta(microseconds=1)) == consent
    expired = refused(await find(store, at=NOW + DAY), "expired")
    assert expired.consent == consent and consent.status(NOW + DAY) == "expired"
    early = refused(await find(store, at=NOW - timedelta(microseconds=1)), "not_yet_valid")
    assert early.consent == consent and consent.status(NOW - DAY) == "active"


async def test_a_check_outside_the_categories_is_out_of_scope(consents: Backend) -> None:
    store = await consents.new()
    consent = await store.grant(grant(checks=("identity", "household")))
    out = refused(await find(store, checks=("identity", "employment")), "out_of_scope")
    assert out.consent == consent and out.uncovered == ("employment",)


async def test_any_consent_in_force_that_covers_the_checks_is_used(consents: Backend) -> None:
    store = await consents.new()
    narrow = await store.grant(grant(checks=("identity",)))
    broad = await store.grant(grant(checks=("identity", "household", "employment")))
    revoked = await store.grant(grant(checks=("identity", "household")))
    await store.revoke(revoked.consent_id, "withdrawn", "a", at=NOW - timedelta(hours=1))
    assert await find(store, checks=("employment",)) == broad
    assert await find(store, checks=("identity",)) in (narrow, broad)


async def test_the_latest_consent_says_why_none_is_in_force(consents: Backend) -> None:
    store = await consents.new()
    await store.grant(grant(valid_from=NOW - 60 * DAY, valid_until=NOW - 30 * DAY))
    assert refused(await find(store), "expired")
    later = await store.grant(grant())
    await store.revoke(later.consent_id, "withdrawn", "a", at=NOW - timedelta(hours=1))
    assert refused(await find(store), "revoked").consent is not None


async def test_revocation_by_another_instance_holds_at_once(consents: Backend) -> None:
    """Replicas (and the CLI) share the store: nothing is cached, so a revocation elsewhere counts at once."""
    replica, office = await consents.new(), await consents.new()
    consent = await replica.grant(grant())
    assert await find(replica) == consent
    assert await office.get(consent.consent_id) == consent
    await office.revoke(consent.consent_id, "withdrawn at the office", "cli:agent")
    assert refused(await find(replica, at=datetime.now(UTC)), "revoked")


async def test_concurrent_grants_and_revocations(consents: Backend) -> None:
    store = await consents.new()
    granted = await asyncio.gather(*(store.grant(grant(purpose=f"p{i}")) for i in range(40)))
    assert len({c.consent_id for c in granted}) == 40
    results = await asyncio.gather(*(store.revoke(c.consent_id, "bulk", "a") for c in granted for _ in range(2)))
    assert sum(1 for r in results if r is not None and r.changed) == 40
    assert all(c.revoked_at is not None for c in await store.list_for(CITIZEN))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"checks": ()}, "at least one check"),
        ({"valid_until": NOW - 2 * DAY}, "after valid_from"),
        ({"evidence": " "}, "evidence"),
        ({"evidence": "x" * 201}, "evidence"),
        ({"valid_from": datetime(2026, 1, 1)}, "time zone"),
        ({"grantee": ""}, "required"),
    ],
)
def test_a_grant_is_checked_before_any_store_sees_it(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grant(**change)


def test_the_status_is_derived() -> None:
    consent = Consent.new(grant(valid_from=NOW, valid_until=NOW + DAY), created_at=NOW)
    assert [consent.status(NOW + d) for d in (-DAY, 0 * DAY, DAY)] == ["active", "active", "expired"]
    assert replace(consent, revoked_at=NOW).status(NOW - DAY) == "revoked"


# ----------------------------------------------------------------------------------- SQLite specifics


async def test_sqlite_keeps_consents_as_recorded(tmp_path: Path) -> None:
    """Through SQL too, a consent is never edited: only revoked, once."""
    store = SqliteConsentStore(tmp_path / "consents.sqlite3")
    await store.open()
    try:
        consent = await store.grant(grant())
        await store.revoke(consent.consent_id, "withdrawn", "a")
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "consents.sqlite3")
    try:
        for statement in ("UPDATE consents SET valid_until = '2099-01-01T00:00:00.000000+00:00'",
                          "UPDATE consents SET revoked_at = NULL, revoked_reason = NULL, revoked_by = NULL",
                          "UPDATE consents SET revoked_reason = 'other'"):
            with pytest.raises(sqlite3.IntegrityError, match="only be revoked"):
                conn.execute(statement)
    finally:
        conn.close()


async def test_sqlite_store_refuses_calls_once_closed(tmp_path: Path) -> None:
    store = SqliteConsentStore(tmp_path / "consents.sqlite3")
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(str(uuid.uuid4()))


# ----------------------------------------------------------------------------------- PostgreSQL specifics


async def test_postgres_keeps_consents_as_recorded() -> None:
    """Through SQL too, a consent is never edited: only revoked, once."""
    async with fresh_schema_async() as target:
        store = PostgresConsentStore(target)
        await store.open()
        try:
            consent = await store.grant(grant())
            await store.revoke(consent.consent_id, "withdrawn", "a")
        finally:
            await store.close()
        for statement in ("UPDATE consents SET valid_until = '2099-01-01T00:00:00Z'",
                          "UPDATE consents SET revoked_at = NULL, revoked_reason = NULL, revoked_by = NULL",
                          "UPDATE consents SET revoked_reason = 'other'", "UPDATE consents SET checks = '{identity}'"):
            with pytest.raises(psycopg.errors.RaiseException, match="only be revoked"):
                dba(target, statement, disable_triggers=False)


async def test_postgres_revocation_by_a_concurrent_replica_changes_it_once() -> None:
    """Replicas racing to revoke one consent: exactly one revocation is recorded, the others see it."""
    async with fresh_schema_async() as target:
        replicas = [PostgresConsentStore(target) for _ in range(3)]
        await asyncio.gather(*(r.open() for r in replicas))  # one creates the table, the others wait for it
        try:
            consent = await replicas[0].grant(grant())
            results = await asyncio.gather(*(r.revoke(consent.consent_id, f"by {i}", f"replica-{i}")
                                             for i, r in enumerate(replicas) for _ in range(3)))
            changed = [r for r in results if r is not None and r.changed]
            assert len(changed) == 1
            assert {r.consent for r in results if r is not None} == {changed[0].consent}
        finally:
            for replica in replicas:
                await replica.close()


async def test_postgres_store_refuses_calls_once_closed() -> None:
    async with fresh_schema_async() as target:
        store = PostgresConsentStore(target)
        await store.open()
        await store.close()
        await store.close()
        with pytest.raises(RuntimeError, match="closed"):
            await store.get(str(uuid.uuid4()))
