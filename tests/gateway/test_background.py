"""Background tasks stop even when a cancellation is swallowed (gateway/background.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway import background


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again_until_it_stops() -> None:
    """What Python 3.11's wait_for can do to a loop (gh-86296), done here on purpose: the first cancellation is
    caught and the loop goes on; ``await task`` after one ``cancel()`` would wait for ever."""
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        swallowed = False
        while True:
            rounds += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True  # the first one is lost, as wait_for may lose it

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(background.stop(task), 5)
    assert task.cancelled() and rounds > 1


async def test_a_task_that_failed_raises_its_failure() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await background.stop(task)


async def test_a_task_already_done_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await background.stop(task)
    assert task.done() and not task.cancelled()
