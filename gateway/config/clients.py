"""``config/clients.toml``: registered clients, their keys, role, rate limit and rights (with field masks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.known import CLIENT, refuse_unknown, refuse_unknown_in_tables
from gateway.config.purposes import Purpose
from gateway.config.toml import ConfigError, by_language, get, line_of, read_table, resolve
from gateway.federation.checks.registry import CheckRegistry

SCRYPT_HASH = re.compile(r"scrypt\$[0-9]{1,8}\$[0-9]{1,3}\$[0-9]{1,3}\$[A-Za-z0-9_-]{16,64}\$[A-Za-z0-9_-]{43}")

ROLES = ("data", "officer")  # see gateway/trust/roles.py

@dataclass(frozen=True)
class Right:
    purpose: str
    checks: frozenset[str]
    deny: frozenset[str] = frozenset()  # field masks: "<check>.<fact>[:adults|:children]"
    manage_consents: bool = False  # may record, list, show and revoke consents for this (consent-based) purpose

@dataclass(frozen=True)
class ServiceRight:
    """May call ``service`` for ``purpose``; ``deny`` withholds record properties (``months.salary_mad`` names a
    property of a list's items)."""

    service: str
    purpose: str
    deny: frozenset[str] = frozenset()

@dataclass(frozen=True)
class RateLimit:
    rate_per_s: float
    burst: int


DEFAULT_RATE_LIMIT = RateLimit(50.0, 100)  # [rate_limits] rate_per_s, burst: a client without a rate_limit of its own

@dataclass(frozen=True)
class ClientSettings:
    id: str
    name: str
    public_key_files: tuple[Path, ...]
    dev_key: bool
    rights: tuple[Right, ...]
    rate_limit: RateLimit | None = None  # None: the gateway's default
    role: str = "data"  # "data": queries citizen data, manages consents; "officer": reads the access log only
    console_password_hash: str | None = None  # an officer's console password (scrypt; `anss-gateway officer password`)
    names: Mapping[str, str] = field(default_factory=dict)  # display name by language ("fr", "en"): `name_fr`...
    services: tuple[ServiceRight, ...] = ()  # services of other administrations it may call (config/services.toml)

def check_deny_rule(rule: str, checks: frozenset[str], facts: Mapping[str, frozenset[str]]) -> str | None:
    """What is wrong with a field-mask rule, or None; ``facts``: each known check's maskable facts."""
    target, _, qualifier = rule.partition(":")
    check, _, fact = target.partition(".")
    if check not in facts:
        return f"unknown check {check!r} in field mask {rule!r}"
    if check not in checks:
        return f"field mask {rule!r} names a check this right does not grant"
    if fact not in facts[check]:
        return f"unknown fact {fact!r} of {check!r} in field mask {rule!r}; known: {sorted(facts[check])}"
    if qualifier not in ("", "adults", "children"):
        return f"field mask {rule!r}: the qualifier must be 'adults' or 'children'"
    return None

def load_service_rights(path: Path, client_id: str, table: Mapping[str, Any], purposes: Mapping[str, Purpose],
                        services: Mapping[str, Any]) -> tuple[ServiceRight, ...]:
    header = f'[clients."{client_id}"]'
    rights = []
    for i, right in enumerate(get(table, "services", list, f"{path} {header}", [])):
        where = f"{path} {header} services[{i}]"
        if not isinstance(right, dict):
            raise ConfigError(f"{where}: must be a table {{ service, purpose, deny }}")
        unknown = sorted(set(right) - {"service", "purpose", "deny"})
        if unknown:
            raise ConfigError(f"{line_of(path, unknown[0], after=header)} {where}: unknown setting `{unknown[0]}`")
        service = get(right, "service", str, where)
        if service not in services:
            raise ConfigError(f"{line_of(path, chr(34) + service + chr(34), after=header)} {where}: unknown service "
                              f"{service!r}; config/services.toml has {sorted(services)}")
        purpose = get(right, "purpose", str, where)
        if purpose not in purposes:
            raise ConfigError(f"{line_of(path, chr(34) + purpose + chr(34), after=header)} {where}: unknown purpose "
                              f"{purpose!r}")
        deny = get(right, "deny", list, where, [])
        if not all(isinstance(d, str) and d for d in deny):
            raise ConfigError(f"{line_of(path, 'deny', after=header)} {where}: `deny` lists record properties")
        rights.append(ServiceRight(service, purpose, frozenset(deny)))
    return tuple(rights)

def load_clients(path: Path, purposes: Mapping[str, Purpose], registry: CheckRegistry,
                 services: Mapping[str, Any] | None = None) -> dict[str, ClientSettings]:
    clients: dict[str, ClientSettings] = {}
    document = read_table(path)
    refuse_unknown(path, {k: v for k, v in document.items() if k != "clients"}, {})  # one table: [clients.<id>]
    refuse_unknown_in_tables(path, document.get("clients", {}), CLIENT, "clients")
    for client_id, table in document.get("clients", {}).items():
        where = f"{path} [clients.{client_id!r}]"

        def fail(token: str, message: str, _header: str = f'[clients."{client_id}"]') -> ConfigError:
            return ConfigError(f"{line_of(path, chr(34) + token + chr(34), after=_header)} {message}")

        rights = []
        for i, right in enumerate(get(table, "rights", list, where, [])):
            rwhere = f"{where} rights[{i}]"
            purpose = get(right, "purpose", str, rwhere)
            if purpose not in purposes:
                raise fail(purpose, f"{rwhere}: unknown purpose {purpose!r}")
            checks = frozenset(get(right, "checks", list, rwhere))
            unknown = sorted(checks - set(registry.names))
            if unknown:
                raise fail(unknown[0], f"{rwhere}: unknown check(s) {unknown}; known: {list(registry.names)}")
            outside = sorted(checks - set(purposes[purpose].checks))
            if outside:
                raise fail(outside[0], f"{rwhere}: check(s) {outside} are not allowed by purpose {purpose!r}")
            deny = frozenset(get(right, "deny", list, rwhere, []))
            for rule in sorted(deny):
                problem = check_deny_rule(rule, checks, registry.facts)
                if problem:
                    raise fail(rule, f"{rwhere}: {problem}")
            manage = get(right, "manage_consents", bool, rwhere, False)
            if manage and purposes[purpose].legal_basis != "consent":
                at = line_of(path, "manage_consents", chr(34) + purpose + chr(34), after=f'[clients."{client_id}"]')
                raise ConfigError(f"{at} {rwhere}: `manage_consents` needs a consent-based purpose; "
                                  f"{purpose!r} rests on a statute")
            rights.append(Right(purpose, checks, deny, manage))
        role = get(table, "role", str, where, "data")
        if role not in ROLES:
            raise fail(role, f"{where}: `role` must be one of {list(ROLES)}")
        if role == "officer" and (rights or table.get("services")):  # officers never query citizen data
            at = line_of(path, "rights", after=f'[clients."{client_id}"]')
            raise ConfigError(f"{at} {where}: an officer may hold no data rights (`rights` must be empty): give "
                              "data rights to a separate client")
        key_files = tuple(
            p for p in (resolve(path.parent, f) for f in get(table, "public_key_files", list, where, [])) if p
        )
        dev_key = get(table, "dev_key", bool, where, False)
        if not key_files and not dev_key:
            raise ConfigError(f"{where}: a client needs `public_key_files` (or `dev_key = true` in development)")
        limit = table.get("rate_limit")
        rate_limit = None
        if limit is not None:
            lwhere = f"{where} rate_limit"
            rate_limit = RateLimit(get(limit, "rate_per_s", float, lwhere), get(limit, "burst", int, lwhere))
            if rate_limit.rate_per_s <= 0 or rate_limit.burst < 1:
                raise ConfigError(f"{lwhere}: `rate_per_s` must be > 0 and `burst` ≥ 1")
        password_hash = get(table, "console_password_hash", str, where, "")
        if password_hash and not SCRYPT_HASH.fullmatch(password_hash):
            raise fail(password_hash, f"{where}: `console_password_hash` must be what "
                                      "`anss-gateway officer password` prints (scrypt$N$r$p$salt$hash)")
        clients[client_id] = ClientSettings(
            client_id, get(table, "name", str, where, client_id), key_files, dev_key, tuple(rights), rate_limit,
            role, console_password_hash=password_hash or None, names=by_language(table, "name", where),
            services=load_service_rights(path, client_id, table, purposes, services or {}),
        )
    return clients
