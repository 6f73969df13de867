"""The cost of the gateway's trust path per request, step by step, in microseconds.

Runs each step the request path runs — verify the client assertion, remember its jti (replay cache),
take a rate-limit token, pseudonymise the subject, sign the answer, append the access-log entry — on the
real stores (SQLite in a temporary directory; Redis with --redis), and prints the mean cost of each and the
total. Printed, never asserted:

    python -m bench.trust_path [--requests 3000] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from gateway.audit import AccessRecord, Pseudonymiser, SqliteAccessLog
from gateway.client import client_assertion
from gateway.config.settings import load
from gateway.crypto import keys
from gateway.crypto.jws import request_digest, sign_detached
from gateway.crypto.keyring import StaticClientKeys, dev_client_key_path
from gateway.trust.assertion import authenticate
from gateway.trust.ratelimit import Limit, LocalRateLimiter, RateLimiter, RedisRateLimiter
from gateway.trust.replay import RedisReplayCache, ReplayCache, SqliteReplayCache

BODY = orjson.dumps({"subject": {"idcs": "7153094029"}, "purpose": "asd.eligibility", "case_ref": "B-1"})
ANSWER = b'{"checks":{}}' * 200  # ~2.6 kB, the size of a full verification answer


async def timed(label: str, results: dict[str, list[float]], step: Callable[[], Awaitable[object] | object]) -> None:
    started = time.perf_counter_ns()
    outcome = step()
    if asyncio.iscoroutine(outcome):
        await outcome
    results.setdefault(label, []).append((time.perf_counter_ns() - started) / 1000)


async def run(requests: int, use_redis: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        settings = load(env={"ANSS_GATEWAY_STATE_DIR": str(state)})
        resolver = StaticClientKeys.from_settings(settings)
        client_key = keys.load_or_create(dev_client_key_path(state, "anss.asd"))
        gateway_key = keys.generate()
        replay: ReplayCache = RedisReplayCache(settings.redis_url) if use_redis else SqliteReplayCache(
            state / "replay.sqlite3")
        limiter: RateLimiter = RedisRateLimiter(settings.redis_url) if use_redis else LocalRateLimiter()
        log = SqliteAccessLog(state / "log.sqlite3")
        pseudonyms = Pseudonymiser(b"k" * 32)
        await replay.open()
        await log.open()
        tokens = [client_assertion(client_key, "anss.asd", "anss-gateway", "POST", "/v1/verifications", BODY,
                                   jti=uuid.uuid4().hex) for _ in range(requests)]
        results: dict[str, list[float]] = {}
        try:
            for i, token in enumerate(tokens):
                caller_box: list[object] = []

                def verify(token: str = token, box: list[object] = caller_box) -> None:
                    box.append(authenticate(f"Bearer {token}", "POST", "/v1/verifications", BODY,
                                            "anss-gateway", settings.clients, resolver, 30))

                await timed("verify client assertion", results, verify)
                await timed("replay cache (first use)", results,
                            lambda token=token: replay.first_use("anss.asd", token[-32:], time.time() + 90))
                await timed("rate limit token", results,
                            lambda i=i: limiter.take(f"bench-{i % 50}", Limit(1e9, 1_000_000)))
                await timed("pseudonymise subject", results, lambda: pseudonyms.pseudonym("idcs", "7153094029"))
                await timed("sign answer (detached JWS)", results, lambda: sign_detached(
                    gateway_key, ANSWER, "r" * 32, request_sha256=request_digest("j", BODY)))
                record = AccessRecord(time="2026-11-23T10:00:00+00:00", request_id=uuid.uuid4().hex, method="POST",
                                      path="/v1/verifications", status=200, outcome="answered", latency_ms=1.0,
                                      client="anss.asd", subject="p" * 64)
                await timed("access-log append (durable)", results, lambda record=record: log.append(record))
        finally:
            await replay.close()
            await limiter.close()
            await log.close()
    warm = max(1, requests // 10)
    print(f"trust path per request ({'Redis' if use_redis else 'SQLite/local'} stores, {requests} requests, "
          f"first {warm} not counted)")
    total = 0.0
    for label, samples in results.items():
        mean = statistics.fmean(samples[warm:])
        total += mean
        print(f"  {label:<30} {mean:9.1f} µs   (p50 {statistics.median(samples[warm:]):.1f})")
    print(f"  {'total':<30} {total:9.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis", action="store_true", help="Redis replay cache and rate limiter")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.redis))


if __name__ == "__main__":
    main()
