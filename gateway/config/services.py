"""``config/services.toml``: the services partner administrations publish through the gateway.

A service is one administration's operation (``provider`` names a file of ``config/connectors/``,
``operation`` one of its ``[operations.<name>]``) that registered clients may call with
``POST /v1/services/{service}`` when a right of theirs in ``config/clients.toml`` allows it for a purpose
(``services = [{ service, purpose, deny }]``). The purpose (``config/purposes.toml``) brings the legal basis:
a statute, or the citizen's consent. ``docs/services.md`` is the integrators' guide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from connectors.base import ConnectorConfig
from gateway.config.toml import ConfigError, by_language, get, line_of, read_table

SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$")  # provider-scoped: "cnss.declarations"


@dataclass(frozen=True)
class Service:
    name: str
    provider: str  # the administration (connector) that answers it
    operation: str  # its operation
    title: str
    description: str = ""
    titles: Mapping[str, str] = field(default_factory=dict)  # by language: `title_fr`, `title_en`


def load_services(path: Path, connectors: Sequence[ConnectorConfig]) -> dict[str, Service]:
    """The services, each checked against its provider's file; no file: no service is published."""
    if not path.exists():
        return {}
    by_name = {c.name: c for c in connectors}
    services: dict[str, Service] = {}
    for name, table in read_table(path).get("services", {}).items():
        header = f'[services."{name}"]'
        where = f"{line_of(path, header)} {header}"
        if not SERVICE_NAME.match(name):
            raise ConfigError(f"{where}: a service name is dotted lower-case words, e.g. \"cnss.declarations\"")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table")
        unknown = sorted(set(table) - {"provider", "operation", "title", "title_fr", "title_en", "description"})
        if unknown:
            raise ConfigError(f"{line_of(path, unknown[0], after=header)} {header}: unknown setting `{unknown[0]}`")
        provider = get(table, "provider", str, where)
        operation = get(table, "operation", str, where)
        config = by_name.get(provider)
        if config is None:
            raise ConfigError(f"{line_of(path, 'provider', after=header)} {header}: `provider` {provider!r} is not "
                              f"an administration of config/connectors/; known: {sorted(by_name)}")
        if not config.mapping and operation not in config.operations:
            raise ConfigError(f"{line_of(path, 'operation', after=header)} {header}: {provider!r} has no operation "
                              f"{operation!r}; it has {sorted(config.operations)}")
        services[name] = Service(name, provider, operation, get(table, "title", str, where, name),
                                 get(table, "description", str, where, ""), by_language(table, "title", where))
    return services
