"""``config/purposes.toml``: the purposes a client may query for, each with its legal basis and checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.known import PURPOSE, refuse_unknown, refuse_unknown_in_tables
from gateway.config.toml import ConfigError, by_language, get, line_of, read_table
from gateway.federation.checks.registry import CheckRegistry


@dataclass(frozen=True)
class Purpose:
    name: str
    title: str
    legal_basis: str
    statute: str | None
    checks: tuple[str, ...]
    titles: Mapping[str, str] = field(default_factory=dict)  # title by language ("fr", "en"): `title_fr`...

def load_purposes(path: Path, registry: CheckRegistry) -> dict[str, Purpose]:
    """The declared purposes; every check they name must be in ``registry``."""
    purposes: dict[str, Purpose] = {}
    document = read_table(path)
    refuse_unknown(path, {k: v for k, v in document.items() if k != "purposes"}, {})  # one table: [purposes.<name>]
    refuse_unknown_in_tables(path, document.get("purposes", {}), {"": PURPOSE}, "purposes")
    for name, table in document.get("purposes", {}).items():
        where = f"{path} [purposes.{name!r}]"
        checks = tuple(get(table, "checks", list, where))
        unknown = sorted(set(checks) - set(registry.names))
        if unknown:
            raise ConfigError(f"{line_of(path, chr(34) + unknown[0] + chr(34))} {where}: "
                              f"unknown check(s) {unknown}; known: {list(registry.names)}")
        basis = get(table, "legal_basis", str, where)
        if basis not in ("statute", "consent"):
            raise ConfigError(f"{where}: `legal_basis` must be 'statute' or 'consent'")
        statute = get(table, "statute", str, where, "")
        if basis == "statute" and not statute.strip():
            raise ConfigError(f"{where}: a statute-based purpose needs its `statute` reference")
        purposes[name] = Purpose(name, get(table, "title", str, where, ""), basis, statute or None, checks,
                                 by_language(table, "title", where))
    return purposes
