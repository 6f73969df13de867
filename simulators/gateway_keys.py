"""The gateway's public keys as an administration holds them: seeded at start, then following its JWKS.

This is the integration a real administration should copy (docs/security.md, "Verifying the gateway's calls"):
keep the gateway's JWKS (``GET /.well-known/jwks.json``) in a cache; when a call is signed with a ``kid`` the
cache does not hold, fetch the JWKS again (at most once per ``min_refresh_s``, so a flood of forged kids cannot
make it hammer the gateway), and refresh it anyway once it is older than ``max_age_s`` (the JWKS answer's
``Cache-Control: max-age``), so a retired key drops out. A fetch that fails keeps the cache as it was. Thus
``anss-gateway keys rotate`` needs no restart of any administration.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping

import aiohttp
import structlog

from gateway.audit.heads import keys_from_jwks
from gateway.crypto.keys import PublicKey

log = structlog.get_logger(__name__)


class GatewayKeys:
    def __init__(self, seed: Mapping[str, PublicKey], *, min_refresh_s: float = 1.0, max_age_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = dict(seed)
        self.jwks_url: str | None = None
        self.min_refresh_s, self.max_age_s = min_refresh_s, max_age_s
        self._clock = clock
        self._fetched_at = clock()  # the seed ages like a fetched JWKS: a retired seed key drops out too
        self._last_try = -float("inf")
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None
        self.fetches = 0

    def follow(self, jwks_url: str) -> None:
        """From now on, follow this JWKS (the seed keys stay until the first successful fetch)."""
        self.jwks_url = jwks_url

    @property
    def known(self) -> Mapping[str, PublicKey]:
        return dict(self._keys)

    async def key(self, kid: str) -> PublicKey | None:
        if self.jwks_url is None:
            return self._keys.get(kid)
        if kid not in self._keys:  # perhaps a key rotated in: wait for the JWKS (at most once a second)
            await self._refresh()
        elif self._clock() - self._fetched_at >= self.max_age_s and self._refreshing is None:
            # stale: refreshed beside the call, which the key held answers now (a stalled JWKS delays no call)
            self._refreshing = asyncio.create_task(self._refresh_beside())
        return self._keys.get(kid)

    async def _refresh_beside(self) -> None:
        try:
            await self._refresh()
        finally:
            self._refreshing = None

    async def _refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._last_try < self.min_refresh_s:
                return
            assert self.jwks_url is not None
            try:
                timeout = aiohttp.ClientTimeout(total=2)
                async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self.jwks_url) as resp:
                    resp.raise_for_status()
                    document = await resp.json(content_type=None)
                    max_age = _max_age(resp.headers.get("Cache-Control", ""))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("gateway_jwks_unavailable", error=type(exc).__name__)
                return
            finally:  # counted from the end of the attempt: callers queued behind a slow one do not fetch again
                self._last_try = self._clock()
            found = keys_from_jwks(document) if isinstance(document, dict) else {}
            if found:
                self._keys = found
                self._fetched_at = self._clock()
                if max_age is not None:
                    self.max_age_s = max(self.min_refresh_s, min(max_age, 86_400.0))
                self.fetches += 1


def _max_age(cache_control: str) -> float | None:
    """The ``max-age`` of a ``Cache-Control`` header (RFC 9111 section 5.2.2.1), or None."""
    found = re.search(r"(?:^|[,\s])max-age=\"?([0-9]+)\"?", cache_control, re.IGNORECASE)
    return float(found.group(1)) if found else None
