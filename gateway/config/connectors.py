"""``config/connectors/*.toml``: one administration each (``[connector]`` and its ``[operations.*]``), with
environment overrides of its URL; and building them, every mistake one line naming the file and line.

What a kind reads from the file is the kind's own business (``connectors.rest``, ``connectors.soap``); this
module reads the common settings, keeps the raw ``[operations]`` for the kind, and turns what the kind refuses
(``connectors.registry.ConnectorBuildError``) into a ``ConfigError`` at the offending line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from connectors.base import Connector, ConnectorConfig
from connectors.registry import ConnectorBuildError, build_all
from gateway.config.known import setting_line
from gateway.config.toml import ConfigError, get, line_of, read_table

_CONNECTOR_KEYS = frozenset({"name", "kind", "base_url", "audience", "mapping", "timeout_s", "connect_timeout_s",
                             "max_connections", "max_response_bytes", "options", "breaker", "bulkhead"})
CONNECTOR_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DEFAULTS = ConnectorConfig(name="", kind="", base_url="", audience="")
N = TypeVar("N", int, float)


def load_connector_file(path: Path, env: Mapping[str, str]) -> ConnectorConfig:
    """One administration's file; ``ANSS_GATEWAY_CONNECTOR_<NAME>_URL`` overrides its ``base_url``."""
    document = read_table(path)
    unknown_tables = sorted(set(document) - {"connector", "operations"})
    if unknown_tables:
        raise ConfigError(f"{line_of(path, f'[{unknown_tables[0]}')}: unknown table [{unknown_tables[0]}]; "
                          "an administration has [connector] and [operations.<name>]")
    table = document.get("connector")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [connector] is required")
    where = f"{line_of(path, '[connector]')} [connector]"
    unknown = sorted(set(table) - _CONNECTOR_KEYS)
    if unknown:
        raise ConfigError(f"{line_of(path, unknown[0], after='[connector]')} [connector]: unknown setting "
                          f"`{unknown[0]}`; allowed: {sorted(_CONNECTOR_KEYS)}")
    name = get(table, "name", str, where)
    if not CONNECTOR_NAME.fullmatch(name):
        raise ConfigError(f"{_setting(path, 'name')}: `name` must be lower case: a letter, then letters, digits "
                          "and _ (it names the administration in checks, metrics and the access log)")
    base_url = env.get(f"ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL") or get(table, "base_url", str, where)
    parts = urlsplit(base_url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or beyond 65535
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or not port_ok or parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigError(f"{_setting(path, 'base_url')}: `base_url` (or ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL) "
                          "must be http(s)://host[:port][/prefix] (a port from 1 to 65535), without credentials, a "
                          "query or a fragment")
    operations = document.get("operations", {})
    if not isinstance(operations, dict):
        raise ConfigError(f"{line_of(path, 'operations')}: `operations` must be tables [operations.<name>]")
    return ConnectorConfig(
        name=name,
        kind=get(table, "kind", str, where),
        base_url=base_url.rstrip("/"),
        audience=get(table, "audience", str, where),
        mapping=get(table, "mapping", str, where, "") or None,
        operations=operations,
        source=path,
        timeout_s=_positive(path, table, "timeout_s", float, _DEFAULTS.timeout_s),
        connect_timeout_s=_positive(path, table, "connect_timeout_s", float, _DEFAULTS.connect_timeout_s),
        max_connections=_positive(path, table, "max_connections", int, _DEFAULTS.max_connections),
        max_response_bytes=_positive(path, table, "max_response_bytes", int, _DEFAULTS.max_response_bytes),
        options=dict(get(table, "options", dict, where, {})),
        breaker=dict(get(table, "breaker", dict, where, {})),
        bulkhead=dict(get(table, "bulkhead", dict, where, {})),
    )


def _setting(path: Path, key: str) -> str:
    """``file:line [connector]`` of the line setting ``key`` in the [connector] table."""
    return f"{setting_line(path, key, 'connector')} [connector]"


def _positive(path: Path, table: Mapping[str, object], key: str, kind: type[N], default: N) -> N:
    """A deadline, a count or a size: a number above 0 (0 calls in flight would wait forever; a deadline of 0 or
    less would time every call out)."""
    value: N = get(table, key, kind, _setting(path, key), default)
    if not value > 0:
        raise ConfigError(f"{_setting(path, key)}: `{key}` must be greater than 0")
    return value


def load_connectors(directory: Path, env: Mapping[str, str]) -> tuple[ConnectorConfig, ...]:
    configs = tuple(load_connector_file(path, env) for path in sorted(directory.glob("*.toml")))
    if not configs:
        raise ConfigError(f"{directory}: no connector configured")
    return configs


def build_connectors(configs: Iterable[ConnectorConfig], root: Path, *, resilient: bool = True
                     ) -> dict[str, Connector]:
    """Every administration built (WSDLs parsed, operations checked; behind its breaker and bulkhead unless
    ``resilient`` is False), or one ``ConfigError`` line."""
    try:
        return build_all(configs, root, resilient=resilient)
    except ConnectorBuildError as exc:
        raise ConfigError(f"{locate(exc.config, exc.setting)} {exc}") from None


def locate(config: ConnectorConfig, setting: str) -> str:
    """``file:line`` of a dotted setting (``operations.person.fields.birth_date``, ``options.wsdl``, ``kind``) in
    the config's file: the nearest table header the file writes out, then the longest key below it that leads
    to the setting (``params.idcs = {...}``, ``fields = {...}``)."""
    if config.source is None:
        return f"connector {config.name!r}"
    path = config.source
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return str(path)
    parts = [p for p in re.split(r"[.\[\]]", setting) if p]
    full = parts if parts and parts[0] == "operations" else ["connector", *parts]
    for cut in range(len(full), 0, -1):
        header = "[" + ".".join(full[:cut]) + "]"
        start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
        if start is None:
            continue
        rest = full[cut:]
        for k in range(len(rest), 0, -1):
            key = re.compile(re.escape(".".join(rest[:k])) + r"\s*[=.]")
            for j in range(start + 1, len(lines)):
                stripped = lines[j].lstrip()
                if stripped.startswith("["):
                    break
                if key.match(stripped):
                    return f"{path}:{j + 1}"
        return f"{path}:{start + 1}"
    return str(path)
