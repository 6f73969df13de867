"""``[refusals]`` in gateway.toml: how many anonymous refusals the access log records one by one, how the others
are counted, and the free-space floor of the log's disk (``gateway.trust.refusals``; docs/security.md section 8).

Each default is written once, on ``RefusalSettings``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from gateway.config.toml import ConfigError, get

GIB = 1 << 30


@dataclass(frozen=True)
class RefusalSettings:
    """Refusals of requests no client or citizen is established for (no valid assertion or token, an unknown
    resource...): each source address may have ``burst`` of them logged one by one, refilled at ``rate_per_s``;
    all addresses together ``global_burst`` refilled at ``global_rate_per_s``. Beyond that a refusal is answered
    429 ``too_many_refusals`` and only counted: one access-log entry per (window of ``window_s``, address
    pseudonym, refusal code), at most ``max_keys`` distinct counters per window (the rest in one counter per
    code, its address ``*``). A counted refusal's answer is held ``tarpit_s`` (a flooder waiting costs the
    gateway nothing), at most ``tarpit_max`` at once."""

    rate_per_s: float = 1.0
    burst: int = 100
    global_rate_per_s: float = 20.0
    global_burst: int = 500
    window_s: float = 60.0
    max_keys: int = 10_000
    max_addresses: int = 100_000  # per-address buckets kept; a new address beyond is counted, not logged
    tarpit_s: float = 2.0  # a counted refusal's 429 is held this long before it is sent
    tarpit_max: int = 256  # refusals held at once; beyond, the 429 goes at once and the connection is closed
    free_space_floor_bytes: int = GIB  # below this much free space on the log's disk: /readyz degraded, a warning
    free_space_check_s: float = 15.0  # how often the free space is measured

    def entry_bound(self, seconds: float, addresses: int = 1, codes: int = 1) -> int:
        """The most access-log entries ``seconds`` of anonymous refusals from ``addresses`` addresses with
        ``codes`` distinct refusal codes can append: those logged one by one (the global bucket caps them,
        and each address's bucket) plus one counter per (window touched, address, code)."""
        one_by_one = min(addresses * (self.burst + self.rate_per_s * seconds),
                         self.global_burst + self.global_rate_per_s * seconds)
        windows = math.floor(seconds / self.window_s) + 2  # a flood may straddle a window edge at each end
        counters = windows * min(addresses * codes, self.max_keys + codes)
        return math.floor(one_by_one) + counters


def refusal_settings(table: Mapping[str, Any], where: str) -> RefusalSettings:
    """``[refusals]``; every value must be positive."""
    d = RefusalSettings()
    values: dict[str, Any] = {}
    for f in fields(RefusalSettings):
        default = getattr(d, f.name)
        kind = int if isinstance(default, int) else float
        value = get(table, f.name, kind, where, default)
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{where}: `{f.name}` must be greater than 0")
        values[f.name] = value
    unknown = sorted(set(table) - set(values))
    if unknown:
        raise ConfigError(f"{where}: unknown setting `{unknown[0]}`")
    return RefusalSettings(**values)
