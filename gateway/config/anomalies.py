"""``[audit.anomalies]`` in gateway.toml: the thresholds of the access-log anomaly flags.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.toml import ConfigError, get

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

@dataclass(frozen=True)
class AnomalySettings:
    """Thresholds of the access-log anomaly flags (``[audit.anomalies]``; see gateway/audit/anomalies.py)."""

    timezone: str = "Africa/Casablanca"
    working_days: tuple[int, ...] = (0, 1, 2, 3, 4)  # date.weekday(): Monday is 0
    working_hours: tuple[int, int] = (8 * 60, 18 * 60)  # minutes after midnight: [start, end)
    window_hours: float = 24.0  # flags are raised over the entries of this last period
    baseline_days: int = 14  # ... against each client's own history over the days before it
    volume_factor: float = 5.0  # an hour with this many times the client's median active hour
    volume_min_requests: int = 50  # ... and at least this many requests
    refusal_burst: int = 10  # this many refusals of one client
    refusal_burst_minutes: float = 5.0  # ... within this many minutes
    citizen_clients: int = 3  # one citizen looked up by at least this many distinct clients
    citizen_window_hours: float = 24.0  # ... within this many hours
    rare_purpose_share: float = 0.05  # a purpose below this share of the client's own history
    rare_purpose_min_history: int = 100  # ... once that history holds at least this many queries
    anonymous_refusals: int = 100  # this many refusals of requests no client is attributed to ...
    anonymous_refusals_minutes: float = 5.0  # ... within this many minutes

def _clock_minutes(value: str, where: str) -> int:
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2) or int(hours) > 24 or int(minutes) > 59:
        raise ConfigError(f"{where}: `working_hours` must hold two times as \"HH:MM\", not {value!r}")
    return min(int(hours) * 60 + int(minutes), 24 * 60)

def anomaly_settings(table: Mapping[str, Any], where: str) -> AnomalySettings:
    """``[audit.anomalies]``: the thresholds of the anomaly flags, each defaulting to ``AnomalySettings``."""
    d = AnomalySettings()
    zone = get(table, "timezone", str, where, d.timezone)
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown `timezone` {zone!r}") from exc
    days = get(table, "working_days", list, where, [WEEKDAYS[i] for i in d.working_days])
    if not days or any(day not in WEEKDAYS for day in days):
        raise ConfigError(f"{where}: `working_days` must list days among {list(WEEKDAYS)}")
    hours = get(table, "working_hours", list, where, ["08:00", "18:00"])
    if len(hours) != 2 or not all(isinstance(h, str) for h in hours):
        raise ConfigError(f"{where}: `working_hours` must be [\"HH:MM\", \"HH:MM\"] (start, end)")
    start, end = (_clock_minutes(h, where) for h in hours)
    if start >= end:
        raise ConfigError(f"{where}: `working_hours` must start before they end")
    found = AnomalySettings(
        timezone=zone, working_days=tuple(sorted({WEEKDAYS.index(day) for day in days})), working_hours=(start, end),
        window_hours=get(table, "window_hours", float, where, d.window_hours),
        baseline_days=get(table, "baseline_days", int, where, d.baseline_days),
        volume_factor=get(table, "volume_factor", float, where, d.volume_factor),
        volume_min_requests=get(table, "volume_min_requests", int, where, d.volume_min_requests),
        refusal_burst=get(table, "refusal_burst", int, where, d.refusal_burst),
        refusal_burst_minutes=get(table, "refusal_burst_minutes", float, where, d.refusal_burst_minutes),
        citizen_clients=get(table, "citizen_clients", int, where, d.citizen_clients),
        citizen_window_hours=get(table, "citizen_window_hours", float, where, d.citizen_window_hours),
        rare_purpose_share=get(table, "rare_purpose_share", float, where, d.rare_purpose_share),
        rare_purpose_min_history=get(table, "rare_purpose_min_history", int, where, d.rare_purpose_min_history),
        anonymous_refusals=get(table, "anonymous_refusals", int, where, d.anonymous_refusals),
        anonymous_refusals_minutes=get(table, "anonymous_refusals_minutes", float, where,
                                        d.anonymous_refusals_minutes),
    )
    positive = ("window_hours", "baseline_days", "volume_factor", "volume_min_requests", "refusal_burst",
                "refusal_burst_minutes", "citizen_clients", "citizen_window_hours", "rare_purpose_min_history")
    for name in (*positive, "anonymous_refusals", "anonymous_refusals_minutes"):
        if getattr(found, name) <= 0:
            raise ConfigError(f"{where}: `{name}` must be greater than 0")
    if not 0 < found.rare_purpose_share < 1:
        raise ConfigError(f"{where}: `rare_purpose_share` must be between 0 and 1 (a share, e.g. 0.05)")
    return found
