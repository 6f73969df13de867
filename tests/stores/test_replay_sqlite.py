"""The SQLite replay cache's own promises, beyond the contract: decisions on the event loop that never wait for
the write lock, survive the process being killed, are checkpointed by the thread, and an epoch after a restart
of the machine (the boot id the file keeps)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.trust.replay import ReplayHistoryLost, SqliteReplayCache, current_boot_id
from tests.stores.conftest import alive, captured

CLIENT = "anss.asd"
LEEWAY = 30.0


@asynccontextmanager
async def cache_at(path: Path, boot_id: Callable[[], str | None] = current_boot_id,
                   checkpoint_every: int = 256) -> AsyncIterator[SqliteReplayCache]:
    cache = SqliteReplayCache(path, leeway_s=LEEWAY, boot_id=boot_id, checkpoint_every=checkpoint_every)
    await cache.open()
    try:
        yield cache
    finally:
        await cache.close()


def booted(name: str) -> Callable[[], str | None]:
    return lambda: name


async def test_a_restart_of_the_machine_starts_an_epoch(tmp_path: Path) -> None:
    """What was decided without waiting for the disk may be lost with the machine: after another boot, every
    assertion issued before the epoch plus the leeway is refused, used or not; later ones are decided as usual."""
    path = tmp_path / "replay.sqlite3"
    issued = time.time() - 10
    async with cache_at(path, booted("boot-1")) as cache:
        assert await cache.first_use(CLIENT, "used", alive(), issued) is True
        assert cache.epoch is None
    with captured() as logs:
        async with cache_at(path, booted("boot-2")) as cache:
            epoch = cache.epoch
            assert epoch is not None and abs(epoch - time.time()) < 5
            for jti, at in (("used", issued), ("new", time.time())):
                with pytest.raises(ReplayHistoryLost) as refused:
                    await cache.first_use(CLIENT, jti, alive(), at)
                assert refused.value.epoch == epoch and refused.value.accept_from == epoch + LEEWAY
            assert await cache.first_use(CLIENT, "later", alive(), epoch + LEEWAY) is True
            assert await cache.first_use(CLIENT, "later", alive(), epoch + LEEWAY) is False
            assert await cache.first_use(CLIENT, "no-issue-time", alive()) is True  # (only the key decides)
    assert [e["epoch"] for e in logs if e["event"] == "replay_epoch_started"] == [epoch]
    with captured() as logs:  # another process in the same boot: the same epoch, nothing new started
        async with cache_at(path, booted("boot-2")) as other:
            assert other.epoch == epoch
            with pytest.raises(ReplayHistoryLost):
                await other.first_use(CLIENT, "fresh", alive(), epoch + LEEWAY - 1)
    assert not [e for e in logs if e["event"] == "replay_epoch_started"]


async def test_reopening_in_the_same_boot_keeps_the_history_without_an_epoch(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite3"
    async with cache_at(path, booted("boot-1")) as cache:
        assert await cache.first_use(CLIENT, "jti", alive(), time.time() - 200) is True
    async with cache_at(path, booted("boot-1")) as cache:
        assert cache.epoch is None
        assert await cache.first_use(CLIENT, "jti", alive(), time.time() - 200) is False


async def test_without_a_boot_id_every_call_is_durable_and_there_is_no_epoch(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite3"
    async with cache_at(path, booted("boot-1")) as cache:
        assert await cache.first_use(CLIENT, "jti", alive()) is True
    async with cache_at(path, lambda: None) as cache:  # (a machine that does not say which boot it is in)
        assert cache.epoch is None
        assert await cache.first_use(CLIENT, "jti", alive(), time.time() - 200) is False
        assert await cache.first_use(CLIENT, "other", alive(), time.time() - 200) is True


async def test_the_event_loop_never_waits_for_the_write_lock(tmp_path: Path) -> None:
    """While another connection holds the write lock, calls wait on the cache's thread, the loop keeps running,
    and once the lock is free the same jti still has exactly one winner."""
    path = tmp_path / "replay.sqlite3"
    async with cache_at(path) as cache:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        gc.collect()  # (a full collection of this long-lived test process's heap may itself hold the loop a while:
        gc.disable()  # that is not what is measured here)
        ticking = asyncio.create_task(ticker())
        deciding = asyncio.gather(*(cache.first_use(CLIENT, "same", alive()) for _ in range(20)))
        try:
            await asyncio.sleep(0.4)
            assert not deciding.done(), "nothing is decided while the write lock is held elsewhere"
            assert ticks >= 20, f"the event loop was held up ({ticks} ticks in 0.4 s)"
        finally:
            gc.enable()
            holder.execute("ROLLBACK")
            holder.close()
        won = await asyncio.wait_for(deciding, 10)
        ticking.cancel()
        assert sorted(won) == [False] * 19 + [True]
        assert await cache.first_use(CLIENT, "same", alive()) is False  # (and the loop decides again)


KILLED_WORKER = """
import asyncio, sys, time
from pathlib import Path
from gateway.trust.replay import SqliteReplayCache

async def main():
    cache = SqliteReplayCache(Path(sys.argv[1]))
    await cache.open()
    print(await cache.first_use("anss.asd", "jti", time.time() + 300), flush=True)
    await asyncio.sleep(60)  # killed meanwhile, never closed

asyncio.run(main())
"""


async def test_a_decision_survives_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite3"
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 30)  # type: ignore[union-attr]
        assert line.strip() == "True", worker.stderr.read() if worker.stderr else ""
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    assert worker.returncode == -signal.SIGKILL
    async with cache_at(path) as cache:
        assert await cache.first_use(CLIENT, "jti", alive()) is False


def rows_in_the_main_file(path: Path, scratch: Path) -> int:
    """Rows the database file itself holds, its WAL left out (what checkpoints copied back): a copy of the file
    alone, read; 0 when it holds no table yet (or the copy caught a checkpoint half-way)."""
    shutil.copyfile(path, scratch)
    try:
        with contextlib.closing(sqlite3.connect(scratch)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM replay_cache").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0
    finally:
        scratch.unlink()


@pytest.mark.parametrize(("every", "copied"), [(10, True), (10**9, False)])
async def test_the_thread_checkpoints_what_the_loop_decided(tmp_path: Path, every: int, copied: bool) -> None:
    path = tmp_path / "replay.sqlite3"
    async with cache_at(path, checkpoint_every=every) as cache:
        for i in range(35):
            assert await cache.first_use(CLIENT, f"jti-{i}", alive()) is True
        deadline = time.monotonic() + 5
        scratch = tmp_path / "copy.sqlite3"
        while copied and rows_in_the_main_file(path, scratch) < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        rows = rows_in_the_main_file(path, scratch)
    assert rows >= 30 if copied else rows == 0
