"""The one way the gateway connects to Redis (replay cache, rate limits): a bounded, blocking pool."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def redis_client(url: str, timeout_s: float, max_connections: int) -> Redis:
    """A client owning its pool (``aclose()`` closes both).

    The pool blocks: a burst of concurrent calls waits (up to ``timeout_s``) for a connection instead of
    failing with "Too many connections"; every socket operation is bounded by ``timeout_s``.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return Redis.from_pool(pool)
