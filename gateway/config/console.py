"""``[console]`` in gateway.toml: the officers' console sessions and login throttling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.toml import ConfigError, get, resolve


@dataclass(frozen=True)
class ConsoleSettings:
    """The officers' web console (``[console]``; docs/officers.md)."""

    session_key_file: Path | None = None  # None: $ANSS_GATEWAY_CONSOLE_SESSION_KEY, else a dev key under state_dir
    session_idle_minutes: float = 30.0  # a session unused this long ends
    session_max_hours: float = 10.0  # ... and any session ends this long after its login
    login_attempts: int = 5  # sign-in attempts per (officer id, address) before each next one waits ...
    login_address_attempts: int = 20  # ... and per address, whatever the officer id
    login_delay_s: float = 1.0  # the first wait; it doubles with each further attempt ...
    login_max_delay_s: float = 900.0  # ... up to this
    login_window_minutes: float = 15.0  # a count is forgotten this long after its wait ended
    login_max_buckets: int = 100_000  # counts kept in memory (without Redis); the least recent go first

def console_settings(table: Mapping[str, Any], where: str, config_dir: Path,
                      env: Mapping[str, str]) -> ConsoleSettings:
    """``[console]``: officers' sessions and login throttling."""
    d = ConsoleSettings()
    found = ConsoleSettings(
        session_key_file=resolve(config_dir, env.get("ANSS_GATEWAY_CONSOLE_SESSION_KEY_FILE")
                                  or get(table, "session_key_file", str, where, "")),
        session_idle_minutes=get(table, "session_idle_minutes", float, where, d.session_idle_minutes),
        session_max_hours=get(table, "session_max_hours", float, where, d.session_max_hours),
        login_attempts=get(table, "login_attempts", int, where, d.login_attempts),
        login_window_minutes=get(table, "login_window_minutes", float, where, d.login_window_minutes),
        login_address_attempts=get(table, "login_address_attempts", int, where, d.login_address_attempts),
        login_delay_s=get(table, "login_delay_s", float, where, d.login_delay_s),
        login_max_delay_s=get(table, "login_max_delay_s", float, where, d.login_max_delay_s),
        login_max_buckets=get(table, "login_max_buckets", int, where, d.login_max_buckets),
    )
    for name in ("session_idle_minutes", "session_max_hours", "login_attempts", "login_window_minutes",
                 "login_address_attempts", "login_delay_s", "login_max_delay_s"):
        if getattr(found, name) <= 0:
            raise ConfigError(f"{where}: `{name}` must be greater than 0")
    if found.login_max_delay_s < found.login_delay_s:
        raise ConfigError(f"{where}: `login_max_delay_s` must be at least `login_delay_s`")
    if found.login_max_buckets < 2:
        raise ConfigError(f"{where}: `login_max_buckets` must be at least 2")
    return found
