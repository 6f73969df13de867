"""Refusals cannot fill the disk: a flood of anonymous refusals appends a bounded number of access-log entries —
each refusal still answered (401 within the address's budget, 429 ``too_many_refusals`` beyond) and counted, in
provable entries — while a legitimate client keeps getting its answers; and a low disk says so before it fills.
(gateway/trust/refusals.py, gateway/stores/space.py; docs/security.md section 8.)"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from gateway.audit import SqliteAccessLog
from gateway.audit import merkle as m
from gateway.audit.record import leaf_hash
from gateway.audit.sqlite.store import verify_database
from gateway.config.refusals import RefusalSettings
from gateway.config.settings import Settings
from gateway.trust.refusals import AGGREGATED, RefusalBudget, address_of
from gateway.web.state import RUNTIME
from tests.gateway.conftest import Stack, build_stack

PATH = "/v1/verifications"
FLOOD_S = float(os.environ.get("ANSS_GATEWAY_FLOOD_SECONDS", "3"))  # the report's 10 s: set it to 10
CONCURRENCY = 64
SMALL = RefusalSettings(rate_per_s=2.0, burst=20, global_rate_per_s=20.0, global_burst=100, window_s=1.0,
                        tarpit_s=0.5)


def rows(path: Path) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(path)
    try:
        return [(i, bytes(e)) for i, e in conn.execute("SELECT idx, entry FROM access_log ORDER BY idx")]
    finally:
        conn.close()


def with_refusals(refusals: RefusalSettings) -> Any:
    def adjust(settings: Settings) -> Settings:
        return replace(settings, refusals=refusals)
    return adjust


async def flood(url: str, stop: float, statuses: Counter[tuple[int, str]], retry_after: set[str]) -> None:
    """One flooding worker: garbage bearer tokens, as fast as the gateway answers, until ``stop``."""
    async with aiohttp.ClientSession() as session:
        n = 0
        while time.monotonic() < stop:
            n += 1
            headers = {"Authorization": f"Bearer garbage.{os.getpid()}.{n}", "Content-Type": "application/json"}
            async with session.post(url + PATH, data=b"{}", headers=headers) as resp:
                body = orjson.loads(await resp.read())
                assert resp.content_type == "application/problem+json"
                statuses[(resp.status, body["code"])] += 1
                if resp.status == 429:
                    retry_after.add(resp.headers["Retry-After"])
                    # as every 429 (docs/security.md section 4): the bucket that refused, as RateLimit fields
                    assert int(resp.headers["RateLimit-Limit"]) >= 1, dict(resp.headers)
                    assert int(resp.headers["RateLimit-Remaining"]) == 0
                    assert int(resp.headers["RateLimit-Reset"]) >= 0


async def legitimate(stack: Stack, stop: float, answers: list[int]) -> None:
    father = stack.population.fixture("amo_tadamon").father
    while time.monotonic() < stop:
        answer = await stack.client.verify({"idcs": father.idcs}, "asd.eligibility", "CASE-LEGIT", ["identity"])
        answers.append(answer.status)
        await asyncio.sleep(0.05)


async def test_a_flood_of_garbage_tokens_appends_a_bounded_number_of_entries(tmp_path: Path) -> None:
    statuses: Counter[tuple[int, str]] = Counter()
    retry_after: set[str] = set()
    answers: list[int] = []
    async with build_stack(tmp_path, with_refusals(SMALL)) as stack:
        path = stack.settings.audit_database
        before = len(rows(path))
        started = time.monotonic()
        stop = started + FLOOD_S
        await asyncio.gather(*(flood(stack.gateway.url, stop, statuses, retry_after) for _ in range(CONCURRENCY)),
                             legitimate(stack, stop, answers))
        elapsed = time.monotonic() - started
    # the gateway stopped: the last counters are written, and a last head signed over them
    logged = [(i, orjson.loads(e)) for i, e in rows(path)[before:]]
    refusals = [(i, e) for i, e in logged if e["client"] is None]
    one_by_one = [e for _, e in refusals if e["outcome"] != AGGREGATED]
    aggregated = [(i, e) for i, e in refusals if e["outcome"] == AGGREGATED]
    sent = sum(statuses.values())
    codes = {e["outcome"] for e in one_by_one} | {e["detail"]["code"] for _, e in aggregated}
    bound = SMALL.entry_bound(elapsed, addresses=1, codes=len(codes))
    print(f"\nflood: {sent} requests in {elapsed:.1f} s at concurrency {CONCURRENCY} -> {len(refusals)} entries "
          f"({len(one_by_one)} one by one, {len(aggregated)} counters; bound {bound}); "
          f"legitimate answers: {Counter(answers)}")

    assert answers and set(answers) == {200}, "the legitimate client is answered throughout"
    assert len([e for _, e in logged if e["client"] == "anss.asd"]) == len(answers)
    assert sent > bound, "the flood must be larger than the bound, or this test proves nothing"
    assert len(refusals) <= bound
    assert statuses[(429, "too_many_refusals")] > 0 and all(int(s) >= 1 for s in retry_after)
    # every refusal is accounted for: logged one by one, or counted in an entry
    assert len(one_by_one) + sum(e["detail"]["count"] for _, e in aggregated) == sent
    assert len(one_by_one) == sum(n for (status, _), n in statuses.items() if status != 429)
    # a counted refusal's answer is held tarpit_s: each flooding connection gets about one per tarpit_s
    held_limit = CONCURRENCY * (elapsed / SMALL.tarpit_s + 2)
    assert statuses[(429, "too_many_refusals")] <= held_limit, "counted refusals must be held, not answered at once"
    counter = aggregated[0][1]
    assert counter["method"] == "*" and counter["status"] == 429 and counter["subject"] is None
    assert counter["detail"]["address"] != "127.0.0.1" and len(counter["detail"]["address"]) == 64  # a pseudonym
    assert counter["detail"]["window_s"] == SMALL.window_s and counter["detail"]["code"] in codes
    # ... and provable like any entry: the log verifies, and each counter is included under the last signed head
    assert verify_database(path) is None
    log = SqliteAccessLog(path)
    await log.open()
    try:
        head = await log.latest_tree_head()
        assert head is not None and head.head.tree_size == len(rows(path))
        for index, _ in aggregated:
            proof = await log.inclusion_proof(index, head.head.tree_size)
            entry = await log.entry(index)
            assert entry is not None
            assert m.verify_inclusion(leaf_hash(entry), index, head.head.tree_size, proof, head.head.root_hash)
    finally:
        await log.close()


async def test_refusals_of_identified_clients_are_never_counted_away(tmp_path: Path) -> None:
    """The budget is for anonymous refusals only: a known client's refusals are each logged (its own rate limit
    bounds them), even past the anonymous budget."""
    tiny = RefusalSettings(rate_per_s=0.01, burst=1, window_s=60.0)
    async with build_stack(tmp_path, with_refusals(tiny)) as stack:
        before = len(rows(stack.settings.audit_database))
        for i in range(5):
            answer = await stack.client.verify({"idcs": "1234567890"}, "no.such.purpose", f"C-{i}")
            assert answer.status == 400 and answer.json()["code"] == "unknown_purpose"
        async with aiohttp.ClientSession() as session:
            seen = [(await session.get(stack.gateway.url + "/v1/nothing-here")).status for _ in range(3)]
        assert seen == [404, 429, 429]
    logged = [orjson.loads(e) for _, e in rows(stack.settings.audit_database)[before:]]  # counters written at stop
    assert [e["outcome"] for e in logged if e["client"] == "anss.asd"] == ["unknown_purpose"] * 5
    anonymous = [e for e in logged if e["client"] is None]
    # the two refusals counted away are in one counter entry per window: two when a window ended between them
    assert anonymous[0]["outcome"] == "not_found" and {e["outcome"] for e in anonymous[1:]} == {AGGREGATED}
    assert sum(e["detail"]["count"] for e in anonymous[1:]) == 2 and len(anonymous) in (2, 3)
    assert {e["detail"]["code"] for e in anonymous[1:]} == {"not_found"}


def test_the_budget_counts_per_window_address_and_code() -> None:
    now = [1000.0]
    budget = RefusalBudget(RefusalSettings(rate_per_s=0.001, burst=1, window_s=10.0, max_keys=2),
                           lambda a: f"p({a})", wall=lambda: now[0])

    async def run() -> list[Any]:
        verdicts = [await budget.admit(peer, code) for peer, code in
                    [("10.0.0.1", "a"), ("10.0.0.1", "a"), ("10.0.0.1", "a"), ("10.0.0.1", "b"),
                     ("10.0.0.2", "a"), ("10.0.0.2", "a"), ("10.0.0.3", "a"), ("10.0.0.3", "a")]]
        assert [v.logged for v in verdicts] == [True, False, False, False, True, False, True, False]
        assert budget.due() == [], "the window has not ended"
        now[0] += 10
        return budget.due()

    records = asyncio.run(run())
    counts = {(r.detail["address"], r.detail["code"]): r.detail["count"] for r in records}
    # two counters per window at most: the third key goes to the address "*"
    assert counts == {("p(10.0.0.1)", "a"): 2, ("p(10.0.0.1)", "b"): 1, ("*", "a"): 2}
    assert all(r.detail["window_start"] == "1970-01-01T00:16:40+00:00" for r in records)
    assert budget.pending() == 0


def test_addresses_are_counted_by_host_and_ipv6_prefix() -> None:
    assert address_of("192.0.2.7") == "192.0.2.7"
    assert address_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_of("2001:db8:1:2:3:4:5:6") == address_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_of(None) == address_of("not an address") == "unknown"


def test_the_bound_follows_the_settings() -> None:
    s = RefusalSettings(rate_per_s=2.0, burst=20, global_rate_per_s=20.0, global_burst=100, window_s=1.0)
    assert s.entry_bound(10.0) == 20 + 20 + (10 + 2)
    assert s.entry_bound(10.0, addresses=100, codes=2) == 100 + 200 + 12 * 200


async def test_a_disk_below_its_floor_makes_readyz_degraded_and_warns(tmp_path: Path) -> None:
    huge = RefusalSettings(free_space_floor_bytes=2**62, free_space_check_s=0.1)
    with capture_logs() as logs:
        async with build_stack(tmp_path, with_refusals(huge)) as stack:
            async with aiohttp.ClientSession() as session, session.get(stack.gateway.url + "/readyz") as resp:
                ready = await resp.json()
                assert resp.status == 200  # still serving
            assert (ready["status"], ready["checks"]) == (
                "degraded", {"keys": True, "store": True, "connectors": True, "free_space": False})
            watch = stack.gateway.runner.app[RUNTIME].free_space
            assert watch is not None and watch.path == stack.settings.audit_database.parent
            assert (await stack.client.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                              "asd.eligibility", "CASE-1", ["identity"])).status == 200
    warned = [e for e in logs if e["event"] == "free_space_low"]
    assert len(warned) == 1, "once on the way down, then at most every few minutes"
    assert warned[0]["floor_bytes"] == 2**62 and warned[0]["free_bytes"] < 2**62


async def test_a_disk_above_its_floor_is_ready(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.get(stack.gateway.url + "/readyz") as resp:
        assert (await resp.json())["status"] == "ready" and resp.status == 200


@pytest.mark.parametrize(("setting", "line"), [("rate_per_s", "\nrate_per_s = 1\n"), ("burst", "\nburst = 100\n"),
                                             ("window_s", "\nwindow_s = 60\n"),
                                             ("free_space_floor_bytes", "\nfree_space_floor_bytes = 1073741824")])
def test_refusal_settings_must_be_positive(tmp_path: Path, setting: str, line: str) -> None:
    from gateway.config.settings import ConfigError, load
    from tests.config_support import config_with

    config = config_with(tmp_path, line, f"\n{setting} = 0\n", "gateway.toml")
    with pytest.raises(ConfigError, match=rf"\[refusals\]: `{setting}` must be greater than 0"):
        load(config, env={})


def test_the_bundled_refusal_settings_are_the_defaults() -> None:
    from gateway.config.settings import load

    assert load(env={}).refusals == RefusalSettings()


async def test_counted_refusals_are_held_and_beyond_the_hold_limit_the_connection_closes(tmp_path: Path) -> None:
    """The tarpit: a counted refusal's 429 waits tarpit_s before it leaves (a flooder waiting costs nothing); once
    tarpit_max answers are held, the next goes at once with ``Connection: close``."""
    settings = replace(SMALL, burst=1, global_burst=1, tarpit_s=1.0, tarpit_max=3)
    async with build_stack(tmp_path, with_refusals(settings)) as stack:
        async def refused(session: aiohttp.ClientSession, n: int) -> tuple[int, float, str | None]:
            started = time.monotonic()
            async with session.post(stack.gateway.url + PATH, data=b"{}",
                                    headers={"Authorization": f"Bearer garbage.x.{n}"}) as resp:
                await resp.read()
                return resp.status, time.monotonic() - started, resp.headers.get("Connection")

        async with aiohttp.ClientSession() as session:
            first = await refused(session, 0)  # within the budget: logged and answered 401 at once
            answers = await asyncio.gather(*(refused(session, n) for n in range(1, 7)))
        assert first[0] == 401 and first[1] < 0.9
        assert {status for status, _, _ in answers} == {429}
        held = [a for a in answers if a[1] >= 0.9]
        closed = [a for a in answers if a[1] < 0.9]
        assert len(held) == 3, answers  # tarpit_max
        assert len(closed) == 3 and all((c or "").lower() == "close" for _, _, c in closed), answers
        assert stack.gateway.runner.app[RUNTIME].refusals.held == 0
