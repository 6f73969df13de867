"""Full verification of the access log (``audit verify``), timed over a large log. Printed, never asserted.

Fills a fresh log (a temporary SQLite file, or a fresh PostgreSQL schema dropped after) with full-size entries
(``bench.access_log.record``: five checks and four sources each, so the search index holds ten rows per entry),
signs a tree head every 10,000 entries and prunes the oldest tenth (retention), then times ``store.verify()``
(the tree recompute and the check of the search index against the entries, in one pass over one snapshot) a
few times, and once more under ``tracemalloc`` for the peak of Python memory it allocates (bounded: the pass
streams, whatever the log's size).

    python -m bench.access_log_verify [--store sqlite|postgres] [--entries 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import tracemalloc
from datetime import UTC, datetime

from bench.access_log import DEFAULT_DSN, LOG_ID, concurrent, fresh_log
from gateway.audit import AccessLog
from gateway.config.settings import DSN_ENV
from gateway.crypto import keys

HEAD_EVERY = 10_000
CUT_OFF = datetime(2100, 1, 1, tzinfo=UTC)  # after every entry's time: pruning takes all that a head covers


async def fill(store: AccessLog, entries: int, key: keys.SigningKey) -> int:
    """Append ``entries`` with a signed head every ``HEAD_EVERY``; prune the first tenth (signed first, since
    only covered entries are pruned); return how many were pruned."""
    pruned = 0
    tenth = entries // 10
    done = 0
    while done < entries:
        batch = min(HEAD_EVERY - done % HEAD_EVERY, entries - done, *((tenth - done,) if done < tenth else ()))
        await concurrent([store], batch, 64)
        done += batch
        await store.issue_tree_head(key, LOG_ID)
        if done == tenth:
            pruned = await store.prune(CUT_OFF)
    return pruned


async def run(kind: str, dsn: str, entries: int, rounds: int) -> None:
    key = keys.generate()
    trusted = {key.kid: key.public}
    async with fresh_log(kind, dsn) as (where, new_store):
        store = new_store()
        await store.open()
        try:
            started = time.perf_counter()
            pruned = await fill(store, entries, key)
            filled = time.perf_counter() - started
            print(f"access log on {where}: {entries:,} entries ({pruned:,} pruned), filled in {filled:.0f} s")
            timings = []
            for _ in range(rounds):
                started = time.perf_counter()
                assert await store.verify(trusted) is None
                timings.append(time.perf_counter() - started)
            best, median = min(timings), statistics.median(timings)
            print(f"  full verification   median {median:6.2f} s   best {best:6.2f} s   "
                  f"({entries / median:,.0f} entries/s)")
            tracemalloc.start()
            assert await store.verify(trusted) is None
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"  Python memory allocated by one verification, peak: {peak / 2**10:,.0f} KiB")
        finally:
            await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--dsn", help=f"PostgreSQL DSN (default: ${DSN_ENV}, else the local test database)")
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    opts = p.parse_args()
    asyncio.run(run(opts.store, opts.dsn or os.environ.get(DSN_ENV) or DEFAULT_DSN, opts.entries, opts.rounds))


if __name__ == "__main__":
    main()
