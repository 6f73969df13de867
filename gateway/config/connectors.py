"""``config/connectors/*.toml``: one administration each, with environment overrides of its URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from connectors.base import ConnectorConfig
from gateway.config.toml import ConfigError, get, read_table


def load_connectors(directory: Path, env: Mapping[str, str]) -> tuple[ConnectorConfig, ...]:
    configs = []
    for path in sorted(directory.glob("*.toml")):
        table = read_table(path).get("connector", {})
        where = f"{path} [connector]"
        name = get(table, "name", str, where)
        base_url = env.get(f"ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL") or get(table, "base_url", str, where)
        configs.append(
            ConnectorConfig(
                name=name,
                kind=get(table, "kind", str, where),
                base_url=base_url.rstrip("/"),
                audience=get(table, "audience", str, where),
                mapping=get(table, "mapping", str, where),
                timeout_s=get(table, "timeout_s", float, where, 2.0),
                connect_timeout_s=get(table, "connect_timeout_s", float, where, 1.0),
                max_connections=get(table, "max_connections", int, where, 32),
                max_response_bytes=get(table, "max_response_bytes", int, where, 1_048_576),
                options=dict(table.get("options", {})),
            )
        )
    if not configs:
        raise ConfigError(f"{directory}: no connector configured")
    return tuple(configs)
