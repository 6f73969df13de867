"""The one way the gateway connects to Redis (replay cache, rate limits): a bounded, blocking pool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection

OnConnect = Callable[[Connection], Awaitable[None]]


def redis_client(url: str, timeout_s: float, max_connections: int, *, on_connect: OnConnect | None = None) -> Redis:
    """A client owning its pool (``aclose()`` closes both).

    The pool blocks: a burst of concurrent calls waits (up to ``timeout_s``) for a connection instead of
    failing with "Too many connections"; every socket operation is bounded by ``timeout_s``. ``on_connect``
    replaces the connection handshake of each new connection: it must call ``connection.on_connect()``
    first, and may then talk to the server on that connection before any command is sent on it.
    """
    extra: dict[str, Any] = {"redis_connect_func": on_connect} if on_connect is not None else {}
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **extra,
    )
    return Redis.from_pool(pool)
