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
    login_attempts: int = 5  # login attempts per officer id, and per address, ...
    login_window_minutes: float = 15.0  # ... within this many minutes

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
    )
    for name in ("session_idle_minutes", "session_max_hours", "login_attempts", "login_window_minutes"):
        if getattr(found, name) <= 0:
            raise ConfigError(f"{where}: `{name}` must be greater than 0")
    return found
