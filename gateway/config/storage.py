"""``[storage]`` in gateway.toml: where the access log and the consent registry live; the PostgreSQL DSN
from the environment or a file, never from the TOML itself and never echoed; how long to wait for PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from gateway.config.toml import ConfigError, get, resolve
from gateway.stores.postgres import DEFAULT_SCHEMA, SCHEMA_NAME, DatabaseTimeouts, PostgresTarget

DSN_ENV = "ANSS_GATEWAY_DATABASE_DSN"


def database_timeouts(table: Mapping[str, Any], where: str) -> DatabaseTimeouts:
    """The PostgreSQL timeouts of ``[storage]`` (``DatabaseTimeouts`` holds each default), each > 0."""
    d = DatabaseTimeouts()
    values = {f.name: get(table, f.name, float, where, getattr(d, f.name)) for f in fields(DatabaseTimeouts)}
    for name, value in values.items():
        if not (math.isfinite(value) and (value > 0 or (name == "health_fresh_s" and value == 0))):
            raise ConfigError(f"{where}: `{name}` must be a number of seconds greater than 0"
                              + (" (or 0)" if name == "health_fresh_s" else ""))
    return DatabaseTimeouts(**values)


def storage_settings(table: Mapping[str, Any], where: str, config_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """``[storage]``: the backend of the access log and the consent registry; for PostgreSQL the DSN (from
    ``$ANSS_GATEWAY_DATABASE_DSN``, else ``dsn_file``: it may hold a password, so never from the TOML itself
    and never echoed) and the schema."""
    backend = env.get("ANSS_GATEWAY_STORAGE_BACKEND") or get(table, "backend", str, where, "sqlite")
    if backend not in ("sqlite", "postgres"):
        raise ConfigError(f"{where}: `backend` must be 'sqlite' or 'postgres'")
    if "dsn" in table:
        raise ConfigError(f"{where}: a DSN may hold a password: put it in the file named by `dsn_file` or in the "
                          f"environment variable {DSN_ENV}, not in the configuration")
    timeouts = database_timeouts(table, where)  # checked whatever the backend: a mistake shows at once
    if backend == "sqlite":
        return {"storage_backend": backend}
    schema = env.get("ANSS_GATEWAY_DATABASE_SCHEMA") or get(table, "schema", str, where, DEFAULT_SCHEMA)
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(f"{where}: `schema` {schema!r}: 1 to 63 of a-z 0-9 _, not starting with a digit")
    dsn, source = env.get(DSN_ENV), f"the environment variable {DSN_ENV}"
    if not dsn:
        path = resolve(config_dir, get(table, "dsn_file", str, where, ""))
        if path is None:
            raise ConfigError(f"{where}: backend 'postgres' needs a DSN: `dsn_file`, or the environment variable "
                              f"{DSN_ENV}")
        try:
            dsn, source = path.read_text(encoding="utf-8").strip(), f"`dsn_file` {path}"
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: `dsn_file` {path}: cannot read it ({type(exc).__name__})") from None
    try:
        return {"storage_backend": backend,
                "database": PostgresTarget(dsn, schema, timeouts)}
    except ValueError:
        raise ConfigError(f"{where}: the DSN in {source} is not a PostgreSQL connection string (key=value "
                          "pairs or a postgresql:// URI)") from None
