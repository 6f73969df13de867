"""The access-log contract: what every ``AccessLog`` implementation must do, whatever stores it.

Every test takes ``store_factory`` and runs once per implementation. ``await store_factory()`` opens one more
instance on the *same* log — another process on the same SQLite file, another replica on the same PostgreSQL
database — and every instance is closed after the test (closing twice must be harmless). Instances trust
``KEY`` for tree-head signatures (``trusted_keys``).

To add an implementation: add it to ``tests/audit/store_support.py`` (the ``store_factory`` fixture is in
``tests/audit/conftest.py``), then make this file pass unchanged.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from gateway.audit import AccessLog, AccessRecord, TreeHeadSigner
from gateway.audit import merkle as m
from gateway.audit.offline import verify_export_lines
from gateway.crypto import keys
from tests.audit.store_support import KEY, LOG_ID, TRUSTED, StoreFactory

OTHER_KEY = keys.generate("ES256")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def record(i: int, at: datetime | None = None, **extra: object) -> AccessRecord:
    moment = at or T0 + timedelta(seconds=i)
    return AccessRecord(time=moment.isoformat(timespec="microseconds"), request_id=f"req-{i:05d}", method="POST",
                        path="/v1/verifications", status=200, outcome="answered", latency_ms=1.5, client="anss.asd",
                        purpose="asd.eligibility", case_ref=f"CASE-{i:05d}", checks=("identity",),
                        sources=(("civil_registry", "ok"),), detail=dict(extra))


async def filled(store: AccessLog, n: int, start: int = 0) -> list[bytes]:
    for i in range(start, start + n):
        assert await store.append(record(i)) == i
    return [record(i).canonical() for i in range(start, start + n)]


# --- appending and reading --------------------------------------------------------------------------------------------


async def test_is_an_access_log(store_factory: StoreFactory) -> None:
    assert isinstance(await store_factory(), AccessLog)


async def test_append_count_and_read_back(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert await store.count() == 0
    assert await store.entries(0, 0) == []
    expected = await filled(store, 70)
    assert await store.count() == 70
    assert await store.entries(0, 70) == expected
    assert await store.entries(10, 13) == expected[10:13]
    assert await store.entry(69) == expected[69]
    assert await store.leaf_hashes(0, 70) == [m.leaf_hash(e) for e in expected]
    for bad in ((0, 71), (-1, 2), (5, 4)):
        with pytest.raises(IndexError):
            await store.entries(*bad)
        with pytest.raises(IndexError):
            await store.leaf_hashes(*bad)
    for index in (70, -1):
        with pytest.raises(IndexError):
            await store.entry(index)


async def test_entries_are_stored_byte_for_byte(store_factory: StoreFactory) -> None:
    store = await store_factory()
    odd = record(0, **{"note": "ءاب — ü", "nested": {"b": [1, 2.5, None], "a": True}})
    await store.append(odd)
    assert await store.entry(0) == odd.canonical()


async def test_a_record_that_cannot_be_written_fails_alone(store_factory: StoreFactory) -> None:
    store = await store_factory()
    broken = record(99, unserialisable=object())
    results = await asyncio.gather(*(store.append(broken if i == 3 else record(i)) for i in range(8)),
                                   return_exceptions=True)
    assert isinstance(results[3], TypeError)
    assert sorted(r for r in results if isinstance(r, int)) == list(range(7))
    assert await store.verify() is None


# --- proofs ---------------------------------------------------------------------------------------------------------


async def test_proofs_are_rfc9162_proofs_of_the_stored_tree(store_factory: StoreFactory) -> None:
    store = await store_factory()
    leaves = [m.leaf_hash(e) for e in await filled(store, 200)]  # crosses stored subtrees of 64 and 128
    for size in (1, 2, 63, 64, 65, 127, 128, 129, 200):
        root = m.root(leaves[:size])
        for index in sorted(i for i in {0, 1, size // 2, size - 2, size - 1} if 0 <= i < size):
            proof = await store.inclusion_proof(index, size)
            assert proof == m.inclusion_proof(leaves[:size], index)
            assert m.verify_inclusion(leaves[index], index, size, proof, root)
        for old in sorted({0, 1, size // 3, size - 1, size}):
            proof = await store.consistency_proof(old, size)
            assert proof == m.consistency_proof(leaves[:size], old)
            assert m.verify_consistency(old, size, m.root(leaves[:old]), root, proof)
    for index, size in ((0, 0), (5, 5), (-1, 3), (0, 201)):
        with pytest.raises(ValueError):
            await store.inclusion_proof(index, size)
    for old, new in ((3, 2), (-1, 5), (0, 201)):
        with pytest.raises(ValueError):
            await store.consistency_proof(old, new)


# --- tree heads -----------------------------------------------------------------------------------------------------


async def test_tree_heads_are_signed_once_per_size(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert await store.latest_tree_head() is None
    empty = await store.issue_tree_head(KEY, LOG_ID)
    assert empty is not None and empty.head.tree_size == 0 and empty.head.root_hash == m.EMPTY_ROOT
    assert await store.issue_tree_head(KEY, LOG_ID) is None, "nothing new, nothing signed"
    leaves = [m.leaf_hash(e) for e in await filled(store, 37)]
    signed = await store.issue_tree_head(KEY, LOG_ID)
    assert signed is not None
    assert m.TreeHead.verify(signed, TRUSTED) == signed.head
    assert (signed.head.tree_size, signed.head.root_hash, signed.head.log_id) == (37, m.root(leaves), LOG_ID)
    assert signed.head.timestamp_ms >= empty.head.timestamp_ms
    assert await store.issue_tree_head(OTHER_KEY, LOG_ID) is None
    assert await store.latest_tree_head() == signed
    assert await store.tree_head(37) == signed and await store.tree_head(0) == empty
    assert await store.tree_head(36) is None
    await filled(store, 1, start=37)
    with pytest.raises(ValueError, match="log"):
        await store.issue_tree_head(KEY, "another.log")
    assert await store.latest_tree_head() == signed


async def test_heads_from_rotated_keys_verify_with_the_keys_given(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await filled(store, 5)
    await store.issue_tree_head(KEY, LOG_ID)
    await filled(store, 5, start=5)
    await store.issue_tree_head(OTHER_KEY, LOG_ID)  # after a rotation
    both = {KEY.kid: KEY.public, OTHER_KEY.kid: OTHER_KEY.public}
    assert await store.verify(both) is None
    problem = await store.verify()  # the store's own trusted keys lack the new key
    assert problem is not None and problem.index == 5 and "does not verify" in problem.reason


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


async def test_heads_cadence_by_entries_and_by_time(store_factory: StoreFactory) -> None:
    store = await store_factory()
    clock = Clock()
    signer = TreeHeadSigner(store, lambda: KEY, LOG_ID, interval_s=3600, max_entries=10, clock=clock)
    assert await signer.tick() is None, "an empty log needs no head"
    await filled(store, 1)
    first = await signer.tick()
    assert first is not None and first.head.tree_size == 1, "the first entry gets a head at once"
    clock.now = first.head.timestamp_ms / 1000  # the store stamps heads with its own clock
    await filled(store, 9, start=1)
    assert await signer.tick() is None, "9 unsigned entries, and the head is fresh"
    await filled(store, 1, start=10)
    assert (head := await signer.tick()) is not None and head.head.tree_size == 11
    await filled(store, 15, start=11)
    assert (head := await signer.tick()) is not None and head.head.tree_size == 26
    assert await signer.tick() is None
    clock.now += 7200
    assert await signer.tick() is None, "no growth, no head, however long"
    await filled(store, 1, start=26)
    clock.now = (await store.latest_tree_head()).head.timestamp_ms / 1000 + 3600  # type: ignore[union-attr]
    assert (head := await signer.tick()) is not None and head.head.tree_size == 27, "due by time"


async def test_the_signer_signs_the_tail_when_it_stops(store_factory: StoreFactory) -> None:
    store = await store_factory()
    signer = TreeHeadSigner(store, lambda: KEY, LOG_ID, interval_s=3600, max_entries=1000, poll_s=0.01)
    async with signer.running():
        await filled(store, 3)
        await asyncio.sleep(0.05)
        await filled(store, 4, start=3)
    latest = await store.latest_tree_head()
    assert latest is not None and latest.head.tree_size == 7


async def test_the_signer_prunes_per_retention_hourly(store_factory: StoreFactory) -> None:
    store = await store_factory()
    clock = Clock()
    clock.now = (T0 + timedelta(days=2)).timestamp()
    signer = TreeHeadSigner(store, lambda: KEY, LOG_ID, interval_s=60, max_entries=100, retention_days=1,
                            clock=clock)
    await filled(store, 10)
    assert (await signer.tick()) is not None, "signed first: only what a head covers is pruned"
    assert await store.entries(0, 10) == [None] * 10
    await filled(store, 5, start=10)
    await store.issue_tree_head(KEY, LOG_ID)
    await signer.tick()
    assert await store.entry(10) is not None, "pruning runs once an hour"
    clock.now += 3600
    await signer.tick()
    assert await store.entries(10, 15) == [None] * 5
    assert await store.verify() is None


# --- concurrency and restarts ---------------------------------------------------------------------------------------


async def test_concurrent_appends_get_each_index_once(store_factory: StoreFactory) -> None:
    store = await store_factory()
    indices = await asyncio.gather(*(store.append(record(i)) for i in range(300)))
    assert sorted(indices) == list(range(300))
    stored = await store.entries(0, 300)
    assert sorted(json.loads(e)["request_id"] for e in stored if e) == [f"req-{i:05d}" for i in range(300)]
    for i, index in enumerate(indices):
        assert stored[index] == record(i).canonical()
    assert await store.issue_tree_head(KEY, LOG_ID) is not None
    assert await store.verify() is None


async def test_two_instances_on_one_log_keep_one_tree(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()

    async def burst(store: AccessLog, offset: int) -> list[int]:
        got: list[int] = []
        for round_ in range(6):
            got += await asyncio.gather(*(store.append(record(offset + round_ * 25 + i)) for i in range(25)))
        return got

    heads = []
    for_a, for_b = await asyncio.gather(burst(a, 0), burst(b, 1000))
    heads += [h for h in await asyncio.gather(a.issue_tree_head(KEY, LOG_ID), b.issue_tree_head(KEY, LOG_ID)) if h]
    assert sorted(for_a + for_b) == list(range(300))
    assert len(heads) == 1, "one head per size, whichever instance signs"
    assert await a.count() == await b.count() == 300
    more = await asyncio.gather(a.append(record(5000)), b.append(record(5001)))
    assert sorted(more) == [300, 301]
    later = await a.issue_tree_head(KEY, LOG_ID)
    assert later is not None and later.head.tree_size == 302
    leaves = await b.leaf_hashes(0, 302)
    assert later.head.root_hash == m.root(leaves)
    proof = await b.consistency_proof(300, 302)
    assert m.verify_consistency(300, 302, heads[0].head.root_hash, later.head.root_hash, proof)
    assert m.verify_inclusion(leaves[7], 7, 302, await a.inclusion_proof(7, 302), later.head.root_hash)
    assert await a.verify() is None and await b.verify() is None


async def test_a_restart_continues_the_tree(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await filled(store, 100)
    before = await store.issue_tree_head(KEY, LOG_ID)
    assert before is not None
    await store.close()
    reopened = await store_factory()
    assert await reopened.count() == 100
    assert await reopened.latest_tree_head() == before
    assert await reopened.append(record(100)) == 100
    after = await reopened.issue_tree_head(KEY, LOG_ID)
    assert after is not None
    proof = await reopened.consistency_proof(100, 101)
    assert m.verify_consistency(100, 101, before.head.root_hash, after.head.root_hash, proof)
    assert await reopened.verify() is None


# --- retention ------------------------------------------------------------------------------------------------------


async def test_pruning_keeps_the_leaves_and_the_proofs(store_factory: StoreFactory) -> None:
    store = await store_factory()
    entries = await filled(store, 100)  # entry i is dated T0 + i seconds
    leaves = await store.leaf_hashes(0, 100)
    assert await store.prune(T0 + timedelta(seconds=50)) == 0, "nothing is pruned before a signed head covers it"
    await store.issue_tree_head(KEY, LOG_ID)
    await filled(store, 20, start=100)  # not covered by a head: never pruned, whatever their date
    assert await store.prune(T0 + timedelta(days=1)) == 100
    assert await store.prune(T0 + timedelta(days=1)) == 0, "pruning twice prunes nothing more"
    assert await store.count() == 120
    assert await store.entries(0, 100) == [None] * 100
    assert await store.entry(100) is not None
    assert await store.leaf_hashes(0, 100) == leaves
    head = await store.issue_tree_head(KEY, LOG_ID)
    assert head is not None and head.head.root_hash == m.root([*leaves, *await store.leaf_hashes(100, 120)])
    assert m.verify_inclusion(m.leaf_hash(entries[42]), 42, 120, await store.inclusion_proof(42, 120),
                              head.head.root_hash), "a pruned entry can still be proven included"
    assert await store.verify() is None


async def test_pruning_removes_the_oldest_entries_only(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for i in range(30):  # out of order near the cut, as concurrent requests are
        at = T0 + timedelta(seconds=i if i != 12 else 100)
        await store.append(record(i, at=at))
    await store.issue_tree_head(KEY, LOG_ID)
    assert await store.prune(T0 + timedelta(seconds=20)) == 12, "stops at the first entry not old enough"
    assert await store.entry(11) is None and await store.entry(12) is not None and await store.entry(13) is not None
    naive = datetime(2026, 11, 23, 8, 0, 25)  # naive times are UTC
    assert await store.prune(naive) == 0, "entry 12 is newer: pruning only ever removes a prefix"
    assert await store.verify() is None


# --- verification and export ----------------------------------------------------------------------------------------


async def test_a_clean_log_verifies(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert await store.verify() is None
    await filled(store, 130)
    await store.issue_tree_head(KEY, LOG_ID)
    await filled(store, 5, start=130)
    assert await store.verify() is None
    assert await store.verify({}) is not None, "with no trusted key, a signed head does not verify"


async def test_export_is_the_documented_format(store_factory: StoreFactory) -> None:
    store = await store_factory()
    with pytest.raises(ValueError, match="no signed tree head"):
        await store.export(io.StringIO())
    entries = await filled(store, 5)
    heads = [await store.issue_tree_head(KEY, LOG_ID)]
    entries += await filled(store, 66, start=5)
    heads.append(await store.issue_tree_head(KEY, LOG_ID))
    await filled(store, 3, start=71)  # after the last head: not exported
    out = io.StringIO()
    last = await store.export(out)
    assert last == heads[-1]
    text = out.getvalue()
    assert text.endswith("\n") and "\r" not in text
    expected = list(m.export_lines(entries, [h for h in heads if h is not None]))
    assert text.splitlines() == expected, "the same lines as merkle.export_lines"
    summary = verify_export_lines(text.splitlines(), keys.jwks([KEY]))
    assert (summary.tree_size, summary.pruned, summary.heads) == (71, 0, 2)
    bare = io.StringIO()
    await store.export(bare, inclusion_proofs=False, consistency_proofs=False)
    assert all(json.loads(x)["type"] in ("log", "entry", "tree_head") for x in bare.getvalue().splitlines())
