"""Typed, frozen settings loaded once from ``config/`` (TOML) with environment overrides, validated.

Files: ``gateway.toml`` (the gateway), ``purposes.toml``, ``clients.toml`` (clients, keys, rights) and
``connectors/*.toml`` (one administration each). Environment variables (``ANSS_GATEWAY_*``) win over
files; a bad value is a ``ConfigError`` naming the file and the setting.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.base import ConnectorConfig
from gateway.stores.postgres import DEFAULT_SCHEMA, SCHEMA_NAME, PostgresTarget

SCRYPT_HASH = re.compile(r"scrypt\$[0-9]{1,8}\$[0-9]{1,3}\$[0-9]{1,3}\$[A-Za-z0-9_-]{16,64}\$[A-Za-z0-9_-]{43}")
ROOT = Path(os.environ.get("ANSS_GATEWAY_ROOT", Path(__file__).resolve().parents[2]))
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


ROLES = ("data", "officer")  # see gateway/trust/roles.py


class ConfigError(ValueError):
    """The configuration is wrong; the message names the file and the setting."""


@dataclass(frozen=True)
class Right:
    purpose: str
    checks: frozenset[str]
    deny: frozenset[str] = frozenset()  # field masks: "<check>.<fact>[:adults|:children]"
    manage_consents: bool = False  # may record, list, show and revoke consents for this (consent-based) purpose


@dataclass(frozen=True)
class RateLimit:
    rate_per_s: float
    burst: int


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


@dataclass(frozen=True)
class Purpose:
    name: str
    title: str
    legal_basis: str
    statute: str | None
    checks: tuple[str, ...]
    titles: Mapping[str, str] = field(default_factory=dict)  # title by language ("fr", "en"): `title_fr`...


@dataclass(frozen=True)
class SimulatorSettings:
    seed: str = "anss-dev"
    households: int = 3_200_000
    host: str = "127.0.0.1"
    base_port: int = 8101  # civil registry; education, health, employment follow


CITIZEN_ALGORITHMS = ("EdDSA", "ES256", "RS256")  # asymmetric only: never `none`, never HS*
LANGUAGES = ("fr", "en")


@dataclass(frozen=True)
class CitizenSettings:
    """``[citizens]``: the identity provider whose tokens citizens present to ``GET /v1/citizen/access-log``."""

    issuer: str = "urn:anss:dev-identity-provider"
    audience: str = "anss-gateway-citizens"
    jwks_file: Path | None = None  # the provider's public keys on disk; None: the dev provider under state_dir
    algorithms: tuple[str, ...] = CITIZEN_ALGORITHMS
    clock_leeway_s: int = 60
    max_token_lifetime_s: int = 3600  # `exp` - `iat` at most this
    idcs_claim: str = "idcs"
    cin_claim: str | None = "cin"  # optional claim; None: not read
    show_consent_evidence: bool = True  # a consent's evidence reference is shown to the citizen it is about
    jwks_setting: str = "[citizens] jwks_file"  # where jwks_file was configured (file:line), for error messages


@dataclass(frozen=True)
class ConsoleSettings:
    """The officers' web console (``[console]``; docs/officers.md)."""

    session_key_file: Path | None = None  # None: $ANSS_GATEWAY_CONSOLE_SESSION_KEY, else a dev key under state_dir
    session_idle_minutes: float = 30.0  # a session unused this long ends
    session_max_hours: float = 10.0  # ... and any session ends this long after its login
    login_attempts: int = 5  # login attempts per officer id, and per address, ...
    login_window_minutes: float = 15.0  # ... within this many minutes


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class AnomalySettings:
    """Thresholds of the access-log anomaly flags (``[audit.anomalies]``; see gateway/audit/anomalies.py)."""

    timezone: str = "Africa/Casablanca"
    working_days: tuple[int, ...] = (0, 1, 2, 3, 4)  # date.weekday(): Monday is 0
    working_hours: tuple[int, int] = (8 * 60, 18 * 60)  # minutes after midnight: [start, end)
    window_hours: float = 24.0  # flags are raised over the entries of this last period
    baseline_days: int = 14  # ... against each client's own history over the days before it
    volume_factor: float = 5.0  # an hour with this many times the client's median active hour
    volume_min_requests: int = 50  # ... and at least this many requests
    refusal_burst: int = 10  # this many refusals of one client
    refusal_burst_minutes: float = 5.0  # ... within this many minutes
    citizen_clients: int = 3  # one citizen looked up by at least this many distinct clients
    citizen_window_hours: float = 24.0  # ... within this many hours
    rare_purpose_share: float = 0.05  # a purpose below this share of the client's own history
    rare_purpose_min_history: int = 100  # ... once that history holds at least this many queries
    anonymous_refusals: int = 100  # this many refusals of requests no client is attributed to ...
    anonymous_refusals_minutes: float = 5.0  # ... within this many minutes


@dataclass(frozen=True)
class Settings:
    gateway_id: str
    host: str
    port: int
    state_dir: Path
    config_dir: Path
    root: Path
    max_body_bytes: int
    clock_leeway_s: int
    signing_key_file: Path | None
    audit_database: Path
    pseudonym_key_file: Path | None
    clients: Mapping[str, ClientSettings]
    purposes: Mapping[str, Purpose]
    connectors: tuple[ConnectorConfig, ...]
    simulators: SimulatorSettings = field(default_factory=SimulatorSettings)
    signing_key_overlap_s: float = 86400.0  # how long a retired signing key stays in the JWKS
    previous_signing_key_files: tuple[Path, ...] = ()
    replay_backend: str = "sqlite"  # "sqlite" (one host) or "redis" (several replicas)
    replay_database: Path | None = None
    rate_limit_backend: str = "local"  # "local" (per process) or "redis" (shared by replicas)
    default_rate_limit: RateLimit = RateLimit(50.0, 100)
    redis_url: str = "redis://127.0.0.1:6379/0"
    idle_timeout_s: float = 15.0  # a connection must deliver a complete request head within this
    body_timeout_s: float = 10.0  # ... and its body within this
    max_header_bytes: int = 8192  # any single header value; bigger is refused with 431
    tree_head_interval_s: float = 60.0  # the access log gets a signed tree head at least this often (when it grew)
    tree_head_max_entries: int = 10_000  # ... and as soon as this many entries are not covered by one
    audit_retention_days: int = 0  # entries older than this lose their payload (leaf hashes stay); 0: keep forever
    consent_database: Path | None = None  # the consent registry (SQLite); None: state_dir/consents.sqlite3
    anomalies: AnomalySettings = field(default_factory=AnomalySettings)  # [audit.anomalies]
    console: ConsoleSettings = field(default_factory=ConsoleSettings)  # [console]
    citizens: CitizenSettings = field(default_factory=CitizenSettings)
    audit_export_max_bytes: int = 64 * 1024 * 1024  # GET /v1/audit/export answers up to this; larger: the CLI
    storage_backend: str = "sqlite"  # access log and consents: "sqlite" (the files above) or "postgres" (shared)
    database: PostgresTarget | None = None  # with "postgres": DSN (never in a repr or a message) and schema

    @property
    def consent_store_path(self) -> Path:
        return self.consent_database or self.state_dir / "consents.sqlite3"

    def connector(self, name: str) -> ConnectorConfig:
        return next(c for c in self.connectors if c.name == name)

    def with_connector_urls(self, urls: Mapping[str, str]) -> Settings:
        """A copy whose connectors point at other base URLs (demo, tests: simulators on free ports)."""
        return replace(
            self,
            connectors=tuple(replace(c, base_url=urls.get(c.name, c.base_url)) for c in self.connectors),
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    value = table.get(key, default)
    if value is None:
        if default is None and key not in table:
            raise ConfigError(f"{where}: `{key}` is required")
        return value
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
        raise ConfigError(f"{where}: `{key}` must be {names.get(kind, kind.__name__)}")
    return value


def _line(path: Path, *needles: str, after: str | None = None) -> str:
    """``file:line`` of the first line holding every needle, past the line holding ``after`` (a table
    header) if given — TOML parsers report no positions, so the mistake is found in the text."""
    try:
        started = after is None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            started = started or (after is not None and after in line)
            if started and all(n in line for n in needles):
                return f"{path}:{number}"
    except OSError:
        pass
    return str(path)


def _check_deny_rule(rule: str, checks: frozenset[str]) -> str | None:
    """What is wrong with a field-mask rule, or None."""
    target, _, qualifier = rule.partition(":")
    check, _, fact = target.partition(".")
    if check not in FACTS:
        return f"unknown check {check!r} in field mask {rule!r}"
    if check not in checks:
        return f"field mask {rule!r} names a check this right does not grant"
    if fact not in FACTS[check]:
        return f"unknown fact {fact!r} of {check!r} in field mask {rule!r}; known: {sorted(FACTS[check])}"
    if qualifier not in ("", "adults", "children"):
        return f"field mask {rule!r}: the qualifier must be 'adults' or 'children'"
    return None


def _resolve(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path


def _by_language(table: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    """The optional translations ``<key>_fr``, ``<key>_en`` of a display text, by language."""
    texts = {lang: _get(table, f"{key}_{lang}", str, where, "") for lang in LANGUAGES}
    return {lang: text for lang, text in texts.items() if text.strip()}


def _load_citizens(path: Path, table: Mapping[str, Any], config_dir: Path) -> CitizenSettings:
    """``[citizens]`` (docs/citizens.md): the identity provider of citizens' tokens, checked at file:line."""
    where = f"{path} [citizens]"

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{_line(path, key, after='[citizens]')} {where}: {message}")

    defaults = CitizenSettings()
    issuer = _get(table, "issuer", str, where, defaults.issuer)
    audience = _get(table, "audience", str, where, defaults.audience)
    for key, value in (("issuer", issuer), ("audience", audience)):
        if not value.strip() or value != value.strip():
            raise fail(key, f"`{key}` must be a non-empty string without surrounding blanks")
    algorithms = tuple(_get(table, "algorithms", list, where, list(defaults.algorithms)))
    refused = [a for a in algorithms if a not in CITIZEN_ALGORITHMS]
    if refused or not algorithms:
        raise fail("algorithms", f"`algorithms` must name some of {list(CITIZEN_ALGORITHMS)} (asymmetric "
                                 f"signatures only; refused: {refused or 'an empty list'})")
    leeway = _get(table, "clock_leeway_s", int, where, defaults.clock_leeway_s)
    if not 0 <= leeway <= 300:
        raise fail("clock_leeway_s", "`clock_leeway_s` must be between 0 and 300")
    lifetime = _get(table, "max_token_lifetime_s", int, where, defaults.max_token_lifetime_s)
    if not 60 <= lifetime <= 86400:
        raise fail("max_token_lifetime_s", "`max_token_lifetime_s` must be between 60 and 86400")
    claims = {}
    for key, default in (("idcs_claim", defaults.idcs_claim), ("cin_claim", defaults.cin_claim)):
        claims[key] = _get(table, key, str, where, default)
        if key == "idcs_claim" and not claims[key]:
            raise fail(key, "`idcs_claim` must name the claim that carries the citizen's IDCS")
        if claims[key] in ("iss", "aud", "exp", "nbf", "iat", "sub", "jti"):
            raise fail(key, f"`{key}` cannot be the registered claim {claims[key]!r}")
    if claims["idcs_claim"] == claims["cin_claim"]:
        raise fail("cin_claim", "`cin_claim` must differ from `idcs_claim`")
    jwks_file = _get(table, "jwks_file", str, where, "")
    return CitizenSettings(
        issuer=issuer, audience=audience, jwks_file=_resolve(config_dir, jwks_file), algorithms=algorithms,
        clock_leeway_s=leeway, max_token_lifetime_s=lifetime, idcs_claim=claims["idcs_claim"],
        cin_claim=claims["cin_claim"] or None,
        show_consent_evidence=_get(table, "show_consent_evidence", bool, where, defaults.show_consent_evidence),
        jwks_setting=f"{_line(path, 'jwks_file', after='[citizens]')} [citizens] jwks_file",
    )


def _load_purposes(path: Path) -> dict[str, Purpose]:
    purposes: dict[str, Purpose] = {}
    for name, table in _read(path).get("purposes", {}).items():
        where = f"{path} [purposes.{name!r}]"
        checks = tuple(_get(table, "checks", list, where))
        unknown = sorted(set(checks) - set(CHECKS))
        if unknown:
            raise ConfigError(f"{_line(path, chr(34) + unknown[0] + chr(34))} {where}: "
                              f"unknown check(s) {unknown}; known: {list(CHECKS)}")
        basis = _get(table, "legal_basis", str, where)
        if basis not in ("statute", "consent"):
            raise ConfigError(f"{where}: `legal_basis` must be 'statute' or 'consent'")
        statute = _get(table, "statute", str, where, "")
        if basis == "statute" and not statute.strip():
            raise ConfigError(f"{where}: a statute-based purpose needs its `statute` reference")
        purposes[name] = Purpose(name, _get(table, "title", str, where, ""), basis, statute or None, checks,
                                 _by_language(table, "title", where))
    return purposes


def _load_clients(path: Path, purposes: Mapping[str, Purpose]) -> dict[str, ClientSettings]:
    clients: dict[str, ClientSettings] = {}
    for client_id, table in _read(path).get("clients", {}).items():
        where = f"{path} [clients.{client_id!r}]"

        def fail(token: str, message: str, _header: str = f'[clients."{client_id}"]') -> ConfigError:
            return ConfigError(f"{_line(path, chr(34) + token + chr(34), after=_header)} {message}")

        rights = []
        for i, right in enumerate(_get(table, "rights", list, where, [])):
            rwhere = f"{where} rights[{i}]"
            purpose = _get(right, "purpose", str, rwhere)
            if purpose not in purposes:
                raise fail(purpose, f"{rwhere}: unknown purpose {purpose!r}")
            checks = frozenset(_get(right, "checks", list, rwhere))
            unknown = sorted(checks - set(CHECKS))
            if unknown:
                raise fail(unknown[0], f"{rwhere}: unknown check(s) {unknown}; known: {list(CHECKS)}")
            outside = sorted(checks - set(purposes[purpose].checks))
            if outside:
                raise fail(outside[0], f"{rwhere}: check(s) {outside} are not allowed by purpose {purpose!r}")
            deny = frozenset(_get(right, "deny", list, rwhere, []))
            for rule in sorted(deny):
                problem = _check_deny_rule(rule, checks)
                if problem:
                    raise fail(rule, f"{rwhere}: {problem}")
            manage = _get(right, "manage_consents", bool, rwhere, False)
            if manage and purposes[purpose].legal_basis != "consent":
                at = _line(path, "manage_consents", chr(34) + purpose + chr(34), after=f'[clients."{client_id}"]')
                raise ConfigError(f"{at} {rwhere}: `manage_consents` needs a consent-based purpose; "
                                  f"{purpose!r} rests on a statute")
            rights.append(Right(purpose, checks, deny, manage))
        role = _get(table, "role", str, where, "data")
        if role not in ROLES:
            raise fail(role, f"{where}: `role` must be one of {list(ROLES)}")
        if role == "officer" and rights:  # officers read the log; they never query citizen data
            at = _line(path, "rights", after=f'[clients."{client_id}"]')
            raise ConfigError(f"{at} {where}: an officer may hold no data rights (`rights` must be empty): give "
                              "data rights to a separate client")
        key_files = tuple(
            p for p in (_resolve(path.parent, f) for f in _get(table, "public_key_files", list, where, [])) if p
        )
        dev_key = _get(table, "dev_key", bool, where, False)
        if not key_files and not dev_key:
            raise ConfigError(f"{where}: a client needs `public_key_files` (or `dev_key = true` in development)")
        limit = table.get("rate_limit")
        rate_limit = None
        if limit is not None:
            lwhere = f"{where} rate_limit"
            rate_limit = RateLimit(_get(limit, "rate_per_s", float, lwhere), _get(limit, "burst", int, lwhere))
            if rate_limit.rate_per_s <= 0 or rate_limit.burst < 1:
                raise ConfigError(f"{lwhere}: `rate_per_s` must be > 0 and `burst` ≥ 1")
        password_hash = _get(table, "console_password_hash", str, where, "")
        if password_hash and not SCRYPT_HASH.fullmatch(password_hash):
            raise fail(password_hash, f"{where}: `console_password_hash` must be what "
                                      "`anss-gateway officer password` prints (scrypt$N$r$p$salt$hash)")
        clients[client_id] = ClientSettings(
            client_id, _get(table, "name", str, where, client_id), key_files, dev_key, tuple(rights), rate_limit,
            role, console_password_hash=password_hash or None, names=_by_language(table, "name", where),
        )
    return clients


def _load_connectors(directory: Path, env: Mapping[str, str]) -> tuple[ConnectorConfig, ...]:
    configs = []
    for path in sorted(directory.glob("*.toml")):
        table = _read(path).get("connector", {})
        where = f"{path} [connector]"
        name = _get(table, "name", str, where)
        base_url = env.get(f"ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL") or _get(table, "base_url", str, where)
        configs.append(
            ConnectorConfig(
                name=name,
                kind=_get(table, "kind", str, where),
                base_url=base_url.rstrip("/"),
                audience=_get(table, "audience", str, where),
                mapping=_get(table, "mapping", str, where),
                timeout_s=_get(table, "timeout_s", float, where, 2.0),
                connect_timeout_s=_get(table, "connect_timeout_s", float, where, 1.0),
                max_connections=_get(table, "max_connections", int, where, 32),
                max_response_bytes=_get(table, "max_response_bytes", int, where, 1_048_576),
                options=dict(table.get("options", {})),
            )
        )
    if not configs:
        raise ConfigError(f"{directory}: no connector configured")
    return tuple(configs)


def _audit_cadence(audit: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Tree-head cadence and retention of the access log (docs/merkle-log.md section 5)."""
    interval = _get(audit, "tree_head_interval_s", float, where, 60.0)
    max_entries = _get(audit, "tree_head_max_entries", int, where, 10_000)
    retention = _get(audit, "retention_days", int, where, 0)
    if interval <= 0 or max_entries < 1 or retention < 0:
        raise ConfigError(f"{where}: `tree_head_interval_s` must be > 0, `tree_head_max_entries` >= 1 and "
                          "`retention_days` >= 0 (0: keep entries forever)")
    return {"tree_head_interval_s": interval, "tree_head_max_entries": max_entries,
            "audit_retention_days": retention}


def _clock_minutes(value: str, where: str) -> int:
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2) or int(hours) > 24 or int(minutes) > 59:
        raise ConfigError(f"{where}: `working_hours` must hold two times as \"HH:MM\", not {value!r}")
    return min(int(hours) * 60 + int(minutes), 24 * 60)


def _console_settings(table: Mapping[str, Any], where: str, config_dir: Path,
                      env: Mapping[str, str]) -> ConsoleSettings:
    """``[console]``: officers' sessions and login throttling."""
    d = ConsoleSettings()
    found = ConsoleSettings(
        session_key_file=_resolve(config_dir, env.get("ANSS_GATEWAY_CONSOLE_SESSION_KEY_FILE")
                                  or _get(table, "session_key_file", str, where, "")),
        session_idle_minutes=_get(table, "session_idle_minutes", float, where, d.session_idle_minutes),
        session_max_hours=_get(table, "session_max_hours", float, where, d.session_max_hours),
        login_attempts=_get(table, "login_attempts", int, where, d.login_attempts),
        login_window_minutes=_get(table, "login_window_minutes", float, where, d.login_window_minutes),
    )
    for name in ("session_idle_minutes", "session_max_hours", "login_attempts", "login_window_minutes"):
        if getattr(found, name) <= 0:
            raise ConfigError(f"{where}: `{name}` must be greater than 0")
    return found


def _anomaly_settings(table: Mapping[str, Any], where: str) -> AnomalySettings:
    """``[audit.anomalies]``: the thresholds of the anomaly flags, each defaulting to ``AnomalySettings``."""
    d = AnomalySettings()
    zone = _get(table, "timezone", str, where, d.timezone)
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown `timezone` {zone!r}") from exc
    days = _get(table, "working_days", list, where, [WEEKDAYS[i] for i in d.working_days])
    if not days or any(day not in WEEKDAYS for day in days):
        raise ConfigError(f"{where}: `working_days` must list days among {list(WEEKDAYS)}")
    hours = _get(table, "working_hours", list, where, ["08:00", "18:00"])
    if len(hours) != 2 or not all(isinstance(h, str) for h in hours):
        raise ConfigError(f"{where}: `working_hours` must be [\"HH:MM\", \"HH:MM\"] (start, end)")
    start, end = (_clock_minutes(h, where) for h in hours)
    if start >= end:
        raise ConfigError(f"{where}: `working_hours` must start before they end")
    found = AnomalySettings(
        timezone=zone, working_days=tuple(sorted({WEEKDAYS.index(day) for day in days})), working_hours=(start, end),
        window_hours=_get(table, "window_hours", float, where, d.window_hours),
        baseline_days=_get(table, "baseline_days", int, where, d.baseline_days),
        volume_factor=_get(table, "volume_factor", float, where, d.volume_factor),
        volume_min_requests=_get(table, "volume_min_requests", int, where, d.volume_min_requests),
        refusal_burst=_get(table, "refusal_burst", int, where, d.refusal_burst),
        refusal_burst_minutes=_get(table, "refusal_burst_minutes", float, where, d.refusal_burst_minutes),
        citizen_clients=_get(table, "citizen_clients", int, where, d.citizen_clients),
        citizen_window_hours=_get(table, "citizen_window_hours", float, where, d.citizen_window_hours),
        rare_purpose_share=_get(table, "rare_purpose_share", float, where, d.rare_purpose_share),
        rare_purpose_min_history=_get(table, "rare_purpose_min_history", int, where, d.rare_purpose_min_history),
        anonymous_refusals=_get(table, "anonymous_refusals", int, where, d.anonymous_refusals),
        anonymous_refusals_minutes=_get(table, "anonymous_refusals_minutes", float, where,
                                        d.anonymous_refusals_minutes),
    )
    positive = ("window_hours", "baseline_days", "volume_factor", "volume_min_requests", "refusal_burst",
                "refusal_burst_minutes", "citizen_clients", "citizen_window_hours", "rare_purpose_min_history")
    for name in (*positive, "anonymous_refusals", "anonymous_refusals_minutes"):
        if getattr(found, name) <= 0:
            raise ConfigError(f"{where}: `{name}` must be greater than 0")
    if not 0 < found.rare_purpose_share < 1:
        raise ConfigError(f"{where}: `rare_purpose_share` must be between 0 and 1 (a share, e.g. 0.05)")
    return found


def _positive(table: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value: int = _get(table, key, int, where, default)
    if value < 1:
        raise ConfigError(f"{where}: `{key}` must be a positive integer")
    return value


DSN_ENV = "ANSS_GATEWAY_DATABASE_DSN"


def _storage(table: Mapping[str, Any], where: str, config_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """``[storage]``: the backend of the access log and the consent registry; for PostgreSQL the DSN (from
    ``$ANSS_GATEWAY_DATABASE_DSN``, else ``dsn_file``: it may hold a password, so never from the TOML itself
    and never echoed) and the schema."""
    backend = env.get("ANSS_GATEWAY_STORAGE_BACKEND") or _get(table, "backend", str, where, "sqlite")
    if backend not in ("sqlite", "postgres"):
        raise ConfigError(f"{where}: `backend` must be 'sqlite' or 'postgres'")
    if "dsn" in table:
        raise ConfigError(f"{where}: a DSN may hold a password: put it in the file named by `dsn_file` or in the "
                          f"environment variable {DSN_ENV}, not in the configuration")
    if backend == "sqlite":
        return {"storage_backend": backend}
    schema = env.get("ANSS_GATEWAY_DATABASE_SCHEMA") or _get(table, "schema", str, where, DEFAULT_SCHEMA)
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(f"{where}: `schema` {schema!r}: 1 to 63 of a-z 0-9 _, not starting with a digit")
    dsn, source = env.get(DSN_ENV), f"the environment variable {DSN_ENV}"
    if not dsn:
        path = _resolve(config_dir, _get(table, "dsn_file", str, where, ""))
        if path is None:
            raise ConfigError(f"{where}: backend 'postgres' needs a DSN: `dsn_file`, or the environment variable "
                              f"{DSN_ENV}")
        try:
            dsn, source = path.read_text(encoding="utf-8").strip(), f"`dsn_file` {path}"
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: `dsn_file` {path}: cannot read it ({type(exc).__name__})") from None
    try:
        return {"storage_backend": backend, "database": PostgresTarget(dsn, schema)}
    except ValueError:
        raise ConfigError(f"{where}: the DSN in {source} is not a PostgreSQL connection string (key=value "
                          "pairs or a postgresql:// URI)") from None


def load(config_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the settings; environment overrides win over the files."""
    env = os.environ if env is None else env
    config_dir = Path(env.get("ANSS_GATEWAY_CONFIG") or config_dir or ROOT / "config")
    gateway_file = config_dir / "gateway.toml"
    data = _read(gateway_file)
    gw = data.get("gateway", {})
    where = f"{gateway_file} [gateway]"
    state_dir = Path(env.get("ANSS_GATEWAY_STATE_DIR") or _get(gw, "state_dir", str, where, "var"))
    if not state_dir.is_absolute():
        state_dir = (ROOT / state_dir) if "ANSS_GATEWAY_STATE_DIR" not in env else state_dir.resolve()
    port: int = _get(gw, "port", int, where, 8080)
    if env.get("ANSS_GATEWAY_PORT"):
        try:
            port = int(env["ANSS_GATEWAY_PORT"])
        except ValueError as exc:
            raise ConfigError("environment ANSS_GATEWAY_PORT must be an integer") from exc
    audit, consents = data.get("audit", {}), data.get("consents", {})
    sims = data.get("simulators", {})
    replay, limits, redis = data.get("replay", {}), data.get("rate_limits", {}), data.get("redis", {})
    replay_backend = env.get("ANSS_GATEWAY_REPLAY_BACKEND") or _get(replay, "backend", str, "[replay]", "sqlite")
    limit_backend = env.get("ANSS_GATEWAY_RATE_LIMIT_BACKEND") or _get(limits, "backend", str, "[rate_limits]",
                                                                       "local")
    if replay_backend not in ("sqlite", "redis"):
        raise ConfigError(f"{gateway_file} [replay]: `backend` must be 'sqlite' or 'redis'")
    if limit_backend not in ("local", "redis"):
        raise ConfigError(f"{gateway_file} [rate_limits]: `backend` must be 'local' or 'redis'")
    overlap = env.get("ANSS_GATEWAY_SIGNING_KEY_OVERLAP_S")
    purposes = _load_purposes(config_dir / "purposes.toml")
    return Settings(
        gateway_id=_get(gw, "id", str, where, "anss-gateway"),
        host=env.get("ANSS_GATEWAY_HOST") or _get(gw, "host", str, where, "127.0.0.1"),
        port=port,
        state_dir=state_dir,
        config_dir=config_dir,
        root=ROOT,
        max_body_bytes=_get(gw, "max_body_bytes", int, where, 65536),
        clock_leeway_s=_get(gw, "clock_leeway_s", int, where, 30),
        signing_key_overlap_s=float(overlap) if overlap else _get(gw, "signing_key_overlap_s", float, where, 86400.0),
        previous_signing_key_files=tuple(
            p for p in (_resolve(config_dir, f) for f in _get(gw, "previous_signing_key_files", list, where, [])) if p
        ),
        replay_backend=replay_backend,
        replay_database=_resolve(state_dir, _get(replay, "database", str, "[replay]", "replay.sqlite3")),
        rate_limit_backend=limit_backend,
        default_rate_limit=RateLimit(_get(limits, "rate_per_s", float, "[rate_limits]", 50.0),
                                     _get(limits, "burst", int, "[rate_limits]", 100)),
        redis_url=env.get("ANSS_GATEWAY_REDIS_URL") or _get(redis, "url", str, "[redis]", "redis://127.0.0.1:6379/0"),
        idle_timeout_s=_get(gw, "idle_timeout_s", float, where, 15.0),
        body_timeout_s=_get(gw, "body_timeout_s", float, where, 10.0),
        max_header_bytes=_get(gw, "max_header_bytes", int, where, 8192),
        signing_key_file=_resolve(config_dir, env.get("ANSS_GATEWAY_SIGNING_KEY_FILE") or gw.get("signing_key_file")),
        audit_database=_resolve(state_dir, _get(audit, "database", str, f"{gateway_file} [audit]",
                                                "access-log.sqlite3")) or state_dir / "access-log.sqlite3",
        consent_database=_resolve(state_dir, _get(consents, "database", str, f"{gateway_file} [consents]",
                                                  "consents.sqlite3")),
        pseudonym_key_file=_resolve(
            config_dir, env.get("ANSS_GATEWAY_PSEUDONYM_KEY_FILE") or audit.get("pseudonym_key_file")
        ),
        citizens=_load_citizens(gateway_file, data.get("citizens", {}), config_dir),
        **_audit_cadence(audit, f"{gateway_file} [audit]"),
        anomalies=_anomaly_settings(audit.get("anomalies", {}), f"{gateway_file} [audit.anomalies]"),
        console=_console_settings(data.get("console", {}), f"{gateway_file} [console]", config_dir, env),
        audit_export_max_bytes=_positive(audit, "export_max_bytes", f"{gateway_file} [audit]", 64 * 1024 * 1024),
        **_storage(data.get("storage", {}), f"{gateway_file} [storage]", config_dir, env),
        clients=_load_clients(config_dir / "clients.toml", purposes),
        purposes=purposes,
        connectors=_load_connectors(config_dir / "connectors", env),
        simulators=SimulatorSettings(
            seed=env.get("ANSS_GATEWAY_SIMULATOR_SEED") or _get(sims, "seed", str, "[simulators]", "anss-dev"),
            households=int(_get(sims, "households", int, "[simulators]", 3_200_000)),
            host=_get(sims, "host", str, "[simulators]", "127.0.0.1"),
            base_port=int(env.get("ANSS_GATEWAY_SIMULATOR_BASE_PORT")
                          or _get(sims, "base_port", int, "[simulators]", 8101)),
        ),
    )
