"""Stopping background tasks so that they really stop.

Every long-running loop of the gateway (the tree-head signer, the checkpoint beacon, the free-space watch, the
key watch, the refusal counters, the batch engines) is a task cancelled when its context ends. On Python 3.11
``asyncio.wait_for`` can swallow a cancellation that arrives as its inner future completes (CPython issue
gh-86296, fixed in 3.12): the loop then carries on, and ``await task`` after ``task.cancel()`` waits for ever —
a full test run once hung so, with the tree-head signer still ticking. ``stop`` cancels again until the task is
done.
"""

from __future__ import annotations

import asyncio
from typing import Any

RETRY_S = 0.5  # how long one cancellation is given before the next


async def stop(task: asyncio.Future[Any], grace_s: float = RETRY_S) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again while it swallows the cancellation. Its own
    failure, if it ended with one other than the cancellation, is raised, as ``await task`` would.

    ``grace_s`` is how long the first cancellation is given: a task that drains on cancellation (the batch
    worker finishes its jobs in hand) must not be cancelled a second time meanwhile, which aborts the drain."""
    timeout = grace_s
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)
        timeout = RETRY_S
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
