"""``config/purposes.toml``: the purposes a client may query for, each with its legal basis and checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.toml import ConfigError, by_language, get, line_of, read_table

CHECKS = ("identity", "household", "schooling", "health_coverage", "employment")

# The facts each check can report (see gateway/federation/checks.py); field masks name these.
FACTS: dict[str, frozenset[str]] = {
    "identity": frozenset({"idcs", "cin", "first_name", "last_name", "first_name_ar", "last_name_ar", "sex",
                           "birth_date", "alive", "death_date"}),
    "household": frozenset({"relation", "sex", "birth_date", "alive", "death_date"}),
    "schooling": frozenset({"massar_code", "school_year", "status", "level", "school"}),
    "health_coverage": frozenset({"scheme", "status", "since", "severe_disability"}),
    "employment": frozenset({"employer", "declared_months", "declared_days", "declared_salary_mad"}),
}

@dataclass(frozen=True)
class Purpose:
    name: str
    title: str
    legal_basis: str
    statute: str | None
    checks: tuple[str, ...]
    titles: Mapping[str, str] = field(default_factory=dict)  # title by language ("fr", "en"): `title_fr`...

def load_purposes(path: Path) -> dict[str, Purpose]:
    purposes: dict[str, Purpose] = {}
    for name, table in read_table(path).get("purposes", {}).items():
        where = f"{path} [purposes.{name!r}]"
        checks = tuple(get(table, "checks", list, where))
        unknown = sorted(set(checks) - set(CHECKS))
        if unknown:
            raise ConfigError(f"{line_of(path, chr(34) + unknown[0] + chr(34))} {where}: "
                              f"unknown check(s) {unknown}; known: {list(CHECKS)}")
        basis = get(table, "legal_basis", str, where)
        if basis not in ("statute", "consent"):
            raise ConfigError(f"{where}: `legal_basis` must be 'statute' or 'consent'")
        statute = get(table, "statute", str, where, "")
        if basis == "statute" and not statute.strip():
            raise ConfigError(f"{where}: a statute-based purpose needs its `statute` reference")
        purposes[name] = Purpose(name, get(table, "title", str, where, ""), basis, statute or None, checks,
                                 by_language(table, "title", where))
    return purposes
