"""The settings each configuration file may hold, so that a misspelt one stops the start instead of being
ignored (its default applying silently): one line naming the file, the line and the setting, and what is allowed.

Each loader reads its own settings; this module only lists their names, file by file and table by table, and
``refuse_unknown`` walks a parsed file against that list. A setting added to a loader is added here too
(``tests/config`` loads every shipped file, commented examples included, against it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.toml import LANGUAGES, ConfigError


def _names(*names: str) -> frozenset[str]:
    return frozenset(names)


def _titled(key: str) -> tuple[str, ...]:
    return (key, *(f"{key}_{lang}" for lang in LANGUAGES))


GATEWAY: dict[str, Any] = {
    "gateway": _names("id", "host", "port", "state_dir", "max_body_bytes", "max_header_bytes", "clock_leeway_s",
                      "idle_timeout_s", "body_timeout_s", "signing_key_file", "signing_key_overlap_s",
                      "previous_signing_key_files"),
    "audit": {
        "": _names("database", "pseudonym_key_file", "retention_days", "tree_head_interval_s",
                   "tree_head_max_entries", "export_max_bytes", "checkpoint_origin", "checkpoint_key_file",
                   "high_water_file", "witness_quorum", "witness_timeout_s"),
        "witnesses": _names("url", "vkey"),
        "anomalies": _names("window_hours", "baseline_days", "timezone", "working_days", "working_hours",
                            "volume_factor", "volume_min_requests", "rare_purpose_share", "rare_purpose_min_history",
                            "refusal_burst", "refusal_burst_minutes", "anonymous_refusals",
                            "anonymous_refusals_minutes", "citizen_clients", "citizen_window_hours"),
    },
    "consents": _names("database"),
    "citizens": _names("issuer", "audience", "jwks_file", "algorithms", "clock_leeway_s", "max_token_lifetime_s",
                       "idcs_claim", "cin_claim", "show_consent_evidence"),
    "console": _names("session_key_file", "session_idle_minutes", "session_max_hours", "login_attempts",
                      "login_address_attempts", "login_delay_s", "login_max_delay_s", "login_window_minutes",
                      "login_max_buckets"),
    "storage": _names("backend", "dsn_file", "schema", "connect_timeout_s", "pool_wait_s", "ping_timeout_s",
                      "probe_interval_s", "health_fresh_s",
                      "dsn"),  # known so that its own refusal speaks: a DSN may hold a password, never in the TOML
    "batches": _names("engine", "database", "serve_works", "chunk_size", "concurrency", "worker_concurrency",
                      "capacity", "heartbeat_s", "stalled_after_s", "recover_every_s", "drain_s", "max_subjects",
                      "max_upload_bytes"),
    "refusals": _names("window_s", "rate_per_s", "burst", "global_rate_per_s", "global_burst", "max_addresses",
                       "max_keys", "free_space_floor_bytes", "free_space_check_s"),
    "replay": _names("backend", "database", "redis_prefix"),
    "rate_limits": _names("backend", "rate_per_s", "burst"),
    "redis": _names("url"),
    "simulators": _names("seed", "households", "host", "base_port"),
}
CLIENT = {"": _names(*_titled("name"), "role", "public_key_files", "dev_key", "rights", "services", "rate_limit",
                     "console_password_hash"),
          "rights": _names("purpose", "checks", "deny", "manage_consents"),
          "services": _names("service", "purpose", "deny"),
          "rate_limit": _names("rate_per_s", "burst")}
PURPOSE = _names(*_titled("title"), "legal_basis", "statute", "checks")


def refuse_unknown(path: Path, document: Mapping[str, Any], shape: Mapping[str, Any], header: str = "") -> None:
    """``ConfigError`` at the first setting or table of ``document`` that ``shape`` does not name. A shape maps a
    nested table's name to its own shape (a set of names, or a mapping whose ``""`` holds its own settings)."""
    own: frozenset[str] = shape.get("", frozenset())
    for key, value in document.items():
        sub = shape.get(key)
        if isinstance(sub, frozenset | dict):
            nested = sub if isinstance(sub, dict) else {"": sub}
            tables = value if isinstance(value, list) else [value]  # an array of tables: [[audit.witnesses]]
            for table in tables:
                if isinstance(table, dict):
                    refuse_unknown(path, table, nested, f"{header}.{key}".lstrip("."))
            continue
        if key in own:
            continue
        allowed = sorted(own | {k for k in shape if k})
        where = f"[{header}]" if header else "the top level"
        raise ConfigError(f"{setting_line(path, key, header)} {where}: unknown setting `{key}`; allowed: "
                          f"{', '.join(allowed)}")


def setting_line(path: Path, key: str, header: str) -> str:
    """``file:line`` of the line setting ``key`` (``key =`` at its start, or inside an inline table) in the table
    ``header`` (``""``: the top level), else in the nearest enclosing table the file writes out; or the line of a
    table ``[header.key]`` itself; ``file`` alone when none."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return str(path)
    setting = re.compile(rf"(^|[{{,]\s*){re.escape(key)}\s*=")
    table = re.compile(rf"^\[\[?{re.escape(f'{header}.{key}' if header else key)}[\].]")  # [key] opens it
    parts = header.split(".") if header else []
    while True:
        opening = "[" + ".".join(parts) if parts else None
        inside = opening is None  # the top level: until the first table
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if table.match(text):
                return f"{path}:{number}"
            if text.startswith("["):  # a table starts: inside it only if it is the one looked in
                inside = opening is not None and opening in text
            elif inside and not text.startswith("#") and setting.search(text):
                return f"{path}:{number}"
        if not parts:
            return str(path)
        parts.pop()


def refuse_unknown_in_tables(path: Path, tables: Mapping[str, Any], shape: Mapping[str, Any], kind: str) -> None:
    """The same for a file of named tables (``[clients."<id>"]``, ``[purposes."<name>"]``): each against ``shape``."""
    for name, table in tables.items():
        if isinstance(table, dict):
            refuse_unknown(path, table, shape, f'{kind}."{name}"')
