"""Anonymous refusals: how many the access log records one by one, and the counters that record the rest.

Anyone who reaches the port can send requests the gateway must refuse before it knows who is calling (garbage
bearer tokens, unknown resources): logged one entry each, a flood fills the disk. ``RefusalBudget`` decides,
for each refusal of a request no client or citizen was established for (``anonymous``):

* within the source address's token bucket (``burst``, refilled at ``rate_per_s``) and the bucket all addresses
  share (``global_burst``, ``global_rate_per_s``), the refusal is answered and logged as before;
* beyond it, the answer is 429 ``too_many_refusals`` with ``Retry-After`` (still a signed problem+json), and
  the refusal is only counted, per (window, address pseudonym, refusal code). ``flush`` turns each counter of
  a finished window into one ordinary access-log entry — in the Merkle tree, provable like any other
  (docs/merkle-log.md section 2, "aggregated refusals") — so the log grows by at most one entry per address
  and code per window, whatever the flood.

The address is the TCP peer (an IPv6 address counts by its /64, which one host usually holds whole); it is
kept in memory only, and the access log names it by its keyed pseudonym (``Pseudonymiser``, kind
``address``). At most ``max_keys`` counters are kept per window: beyond, refusals are counted per code under
the address ``*``, so memory stays bounded too. Buckets are per process (N replicas log N times as many).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from gateway.audit.record import AccessRecord
from gateway.config.refusals import RefusalSettings
from gateway.trust.ratelimit import Decision, Limit, LocalRateLimiter

log = structlog.get_logger(__name__)

AGGREGATED = "refusals_aggregated"  # the outcome of a counter's entry
ANY_ADDRESS = "*"  # the address of the counters kept once ``max_keys`` is reached
GLOBAL = "*"


def address_of(peer: str | None) -> str:
    """The address a refusal budget counts by: an IPv4 address, an IPv6 /64, or ``unknown``."""
    if not peer:
        return "unknown"
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


@dataclass(frozen=True)
class Verdict:
    """Whether this refusal is logged one by one; if not, the delay the 429 tells the caller to wait."""

    logged: bool
    retry_after_s: float = 0.0
    decision: Decision | None = None  # the bucket that refused, for the 429's RateLimit header fields


class RefusalBudget:
    """The per-address and global buckets of anonymous refusals and the counters beyond them (see the module).
    Every method runs on the event loop without awaiting anything but the limiters, which do not yield."""

    def __init__(self, settings: RefusalSettings, pseudonym: Callable[[str], str], *,  # address -> pseudonym
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._pseudonym = pseudonym
        self._wall = wall
        self._per_address = Limit(settings.rate_per_s, settings.burst)
        self._global = Limit(settings.global_rate_per_s, settings.global_burst)
        self._buckets = LocalRateLimiter(max_buckets=settings.max_addresses)
        self._global_bucket = LocalRateLimiter(max_buckets=1)
        self._counts: dict[tuple[int, str, str], int] = {}  # (window number, address pseudonym, code) -> refusals
        self._keys_in_window: dict[int, int] = {}
        self.held = 0  # counted refusals whose answer is being held (``tarpit``)

    async def hold(self) -> bool:
        """Hold a counted refusal's answer for ``tarpit_s`` before it is sent, so that a
        client sending refused requests as fast as it is answered gets one answer per ``tarpit_s`` per connection,
        and costs nothing while it waits. ``False`` (nothing held: close the connection after the answer) when
        ``tarpit_max`` answers are held already."""
        if self.held >= self.settings.tarpit_max:
            return False
        self.held += 1
        try:
            await asyncio.sleep(self.settings.tarpit_s)
        finally:
            self.held -= 1
        return True

    def window_of(self, moment: float) -> int:
        return math.floor(moment / self.settings.window_s)

    async def admit(self, peer: str | None, code: str) -> Verdict:
        """Take one refusal from ``peer``'s bucket and the global one; if either is empty, count it instead."""
        address = address_of(peer)
        mine: Decision = await self._buckets.take(address, self._per_address)
        if mine.allowed:
            shared = await self._global_bucket.take(GLOBAL, self._global)
            if shared.allowed:
                return Verdict(True)
            refused = shared
        else:
            refused = mine
        self._count(self._pseudonym(address), code)
        return Verdict(False, refused.retry_after_s, refused)

    def _count(self, pseudonym: str, code: str, count: int = 1) -> None:
        window = self.window_of(self._wall())
        key = (window, pseudonym, code)
        if key not in self._counts:
            if self._keys_in_window.get(window, 0) >= self.settings.max_keys:
                key = (window, ANY_ADDRESS, code)
            if key not in self._counts:
                self._keys_in_window[window] = self._keys_in_window.get(window, 0) + 1
        self._counts[key] = self._counts.get(key, 0) + count

    def pending(self) -> int:
        """How many counters wait for their window to end."""
        return len(self._counts)

    def due(self, everything: bool = False) -> list[AccessRecord]:
        """The entries of the counters whose window has ended (all of them when ``everything``: on the way out),
        removed from memory; the caller appends them."""
        current = self.window_of(self._wall())
        done = [k for k in self._counts if everything or k[0] < current]
        records = [self._record(key, self._counts.pop(key)) for key in sorted(done)]
        for window in {k[0] for k in done}:
            if everything or window < current:
                self._keys_in_window.pop(window, None)
        return records

    def _record(self, key: tuple[int, str, str], count: int) -> AccessRecord:
        window, address, code = key
        start = window * self.settings.window_s
        end = start + self.settings.window_s
        return AccessRecord(
            time=datetime.fromtimestamp(min(end, self._wall()), UTC).isoformat(timespec="microseconds"),
            request_id=uuid.uuid4().hex, method="*", path="*", status=429, outcome=AGGREGATED, latency_ms=0.0,
            detail={
                "code": code,
                "count": count,
                "window_start": datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
                "window_s": self.settings.window_s,
                "address": address,
            },
        )

    async def flush(self, append: Callable[[AccessRecord], Awaitable[int]], everything: bool = False) -> int:
        """Append the entries of finished windows; a counter whose entry cannot be written is kept for the
        next flush. Returns how many were appended."""
        written = 0
        for record in self.due(everything):
            try:
                await append(record)
            except Exception as exc:
                log.error("aggregated_refusals_not_logged", error=type(exc).__name__, count=record.detail["count"])
                self._keep(record)
                continue
            written += 1
            log.warning("anonymous_refusals_aggregated", code=record.detail["code"], count=record.detail["count"],
                        window_start=record.detail["window_start"])
        return written

    def _keep(self, record: AccessRecord) -> None:
        """Put an unwritten counter back, in the current window: it is retried with the next flush."""
        self._count(str(record.detail["address"]), str(record.detail["code"]), int(record.detail["count"]))

    async def close(self) -> None:
        await self._buckets.close()
        await self._global_bucket.close()
