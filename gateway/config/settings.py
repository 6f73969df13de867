"""Typed, frozen settings loaded once from ``config/`` (TOML) with environment overrides, validated.

Files: ``gateway.toml`` (the gateway), ``purposes.toml``, ``clients.toml`` (clients, keys, rights) and
``connectors/*.toml`` (one administration each). Environment variables (``ANSS_GATEWAY_*``) win over
files; a bad value is a ``ConfigError`` naming the file and the setting. Each section is parsed by its own
module in this package; this one assembles ``Settings`` and holds the ``[gateway]``, ``[audit]``, ``[replay]``,
``[rate_limits]``, ``[redis]`` and ``[simulators]`` values, each default written once (on the dataclass).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from connectors.base import ConnectorConfig
from gateway.config.anomalies import AnomalySettings, anomaly_settings
from gateway.config.batches import BatchSettings, load_batches
from gateway.config.citizens import CITIZEN_ALGORITHMS, CitizenSettings, load_citizens
from gateway.config.clients import DEFAULT_RATE_LIMIT, SCRYPT_HASH, ClientSettings, RateLimit, Right, load_clients
from gateway.config.connectors import load_connectors
from gateway.config.console import ConsoleSettings, console_settings
from gateway.config.known import GATEWAY, refuse_unknown
from gateway.config.purposes import Purpose, load_purposes
from gateway.config.refusals import RefusalSettings, refusal_settings
from gateway.config.services import Service, load_services
from gateway.config.storage import DSN_ENV, storage_settings
from gateway.config.toml import ConfigError, get, positive, read_table, resolve
from gateway.config.witnesses import WitnessingSettings, witnessing_settings
from gateway.federation.checks.registry import CheckRegistry, discover
from gateway.stores.postgres import PostgresTarget

__all__ = [
    "CITIZEN_ALGORITHMS", "DSN_ENV", "ROOT", "SCRYPT_HASH", "AnomalySettings", "CitizenSettings",
    "ClientSettings", "ConfigError", "ConsoleSettings", "Purpose", "RateLimit", "RefusalSettings", "Right", "Settings",
    "SimulatorSettings", "load",
]

ROOT = Path(os.environ.get("ANSS_GATEWAY_ROOT", Path(__file__).resolve().parents[2]))


@dataclass(frozen=True)
class SimulatorSettings:
    seed: str = "anss-dev"
    households: int = 3_200_000
    host: str = "127.0.0.1"
    base_port: int = 8101  # civil registry; education, health, employment, social registry follow


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
    services: Mapping[str, Service] = field(default_factory=dict)  # config/services.toml
    simulators: SimulatorSettings = field(default_factory=SimulatorSettings)
    signing_key_overlap_s: float = 86400.0  # how long a retired signing key stays in the JWKS
    previous_signing_key_files: tuple[Path, ...] = ()
    replay_backend: str = "sqlite"  # "sqlite" (one host) or "redis" (several replicas)
    replay_database: Path | None = None
    replay_redis_prefix: str = "anss:jti:"  # [replay] redis_prefix: the jti keys and the epoch key under it
    rate_limit_backend: str = "local"  # "local" (per process) or "redis" (shared by replicas)
    default_rate_limit: RateLimit = DEFAULT_RATE_LIMIT
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
    batches: BatchSettings = field(default_factory=BatchSettings)  # [batches]
    witnessing: WitnessingSettings = field(default_factory=WitnessingSettings)  # [audit] checkpoints, witnesses
    checks: CheckRegistry = field(default_factory=discover)  # the check vocabulary (built-ins + entry points)
    refusals: RefusalSettings = field(default_factory=RefusalSettings)  # [refusals]: anonymous refusals, free space

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


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def _audit_cadence(audit: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Tree-head cadence and retention of the access log (docs/merkle-log.md section 5)."""
    D = _defaults(Settings)
    interval = get(audit, "tree_head_interval_s", float, where, D["tree_head_interval_s"])
    max_entries = get(audit, "tree_head_max_entries", int, where, D["tree_head_max_entries"])
    retention = get(audit, "retention_days", int, where, D["audit_retention_days"])
    if interval <= 0 or max_entries < 1 or retention < 0:
        raise ConfigError(f"{where}: `tree_head_interval_s` must be > 0, `tree_head_max_entries` >= 1 and "
                          "`retention_days` >= 0 (0: keep entries forever)")
    return {"tree_head_interval_s": interval, "tree_head_max_entries": max_entries,
            "audit_retention_days": retention}


N = TypeVar("N", int, float)


def _from_env(env: Mapping[str, str], name: str, kind: type[N]) -> N | None:
    """A number from the environment (``None`` when unset or empty), or one ``ConfigError`` line naming it."""
    text = env.get(name)
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"environment {name} must be {'an integer' if kind is int else 'a number'}, not {text!r}"
                          ) from None


def load(config_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the settings; environment overrides win over the files."""
    D, S = _defaults(Settings), _defaults(SimulatorSettings)
    env = os.environ if env is None else env
    config_dir = Path(config_dir or env.get("ANSS_GATEWAY_CONFIG") or ROOT / "config")  # --config wins
    gateway_file = config_dir / "gateway.toml"
    data = read_table(gateway_file)
    refuse_unknown(gateway_file, data, GATEWAY)  # a misspelt setting stops the start, not silently ignored
    gw = data.get("gateway", {})
    where = f"{gateway_file} [gateway]"
    state_dir = Path(env.get("ANSS_GATEWAY_STATE_DIR") or get(gw, "state_dir", str, where, "var"))
    if not state_dir.is_absolute():
        state_dir = (ROOT / state_dir) if "ANSS_GATEWAY_STATE_DIR" not in env else state_dir.resolve()
    env_port = _from_env(env, "ANSS_GATEWAY_PORT", int)  # 0 is a port too: any free one
    port: int = env_port if env_port is not None else get(gw, "port", int, where, 8080)
    base_port = _from_env(env, "ANSS_GATEWAY_SIMULATOR_BASE_PORT", int)
    audit, consents = data.get("audit", {}), data.get("consents", {})
    sims = data.get("simulators", {})
    replay, limits, redis = data.get("replay", {}), data.get("rate_limits", {}), data.get("redis", {})
    replay_backend = (env.get("ANSS_GATEWAY_REPLAY_BACKEND")
                      or get(replay, "backend", str, "[replay]", D["replay_backend"]))
    limit_backend = env.get("ANSS_GATEWAY_RATE_LIMIT_BACKEND") or get(limits, "backend", str, "[rate_limits]",
                                                                       D["rate_limit_backend"])
    if replay_backend not in ("sqlite", "redis"):
        raise ConfigError(f"{gateway_file} [replay]: `backend` must be 'sqlite' or 'redis'")
    if limit_backend not in ("local", "redis"):
        raise ConfigError(f"{gateway_file} [rate_limits]: `backend` must be 'local' or 'redis'")
    overlap = _from_env(env, "ANSS_GATEWAY_SIGNING_KEY_OVERLAP_S", float)
    if overlap is None:
        overlap = float(get(gw, "signing_key_overlap_s", float, where, D["signing_key_overlap_s"]))
    if not overlap >= 0:  # a negative overlap would retire the old key from the JWKS before anyone saw the new
        raise ConfigError(f"{where}: `signing_key_overlap_s` (or ANSS_GATEWAY_SIGNING_KEY_OVERLAP_S) must be 0 or more")
    checks = discover()  # built-in and installed checks: the check vocabulary of everything below
    for check in checks:  # what a check loads once (e.g. its rule parameters), each mistake one line
        prepare = getattr(check, "prepare", None)
        if callable(prepare):
            prepare(config_dir)
    purposes = load_purposes(config_dir / "purposes.toml", checks)
    connectors = load_connectors(config_dir / "connectors", env)
    services = load_services(config_dir / "services.toml", connectors)
    return Settings(
        gateway_id=get(gw, "id", str, where, "anss-gateway"),
        host=env.get("ANSS_GATEWAY_HOST") or get(gw, "host", str, where, "127.0.0.1"),
        port=port,
        state_dir=state_dir,
        config_dir=config_dir,
        root=ROOT,
        max_body_bytes=get(gw, "max_body_bytes", int, where, 65536),
        clock_leeway_s=get(gw, "clock_leeway_s", int, where, 30),
        signing_key_overlap_s=overlap,
        previous_signing_key_files=tuple(
            p for p in (resolve(config_dir, f) for f in get(gw, "previous_signing_key_files", list, where, [])) if p
        ),
        replay_backend=replay_backend,
        replay_database=resolve(state_dir, get(replay, "database", str, "[replay]", "replay.sqlite3")),
        replay_redis_prefix=get(replay, "redis_prefix", str, "[replay]", D["replay_redis_prefix"]),
        rate_limit_backend=limit_backend,
        default_rate_limit=RateLimit(get(limits, "rate_per_s", float, "[rate_limits]", DEFAULT_RATE_LIMIT.rate_per_s),
                                     get(limits, "burst", int, "[rate_limits]", DEFAULT_RATE_LIMIT.burst)),
        redis_url=env.get("ANSS_GATEWAY_REDIS_URL") or get(redis, "url", str, "[redis]", D["redis_url"]),
        idle_timeout_s=get(gw, "idle_timeout_s", float, where, D["idle_timeout_s"]),
        body_timeout_s=get(gw, "body_timeout_s", float, where, D["body_timeout_s"]),
        max_header_bytes=get(gw, "max_header_bytes", int, where, D["max_header_bytes"]),
        signing_key_file=resolve(config_dir, env.get("ANSS_GATEWAY_SIGNING_KEY_FILE") or gw.get("signing_key_file")),
        audit_database=resolve(state_dir, get(audit, "database", str, f"{gateway_file} [audit]",
                                                "access-log.sqlite3")) or state_dir / "access-log.sqlite3",
        consent_database=resolve(state_dir, get(consents, "database", str, f"{gateway_file} [consents]",
                                                  "consents.sqlite3")),
        pseudonym_key_file=resolve(
            config_dir, env.get("ANSS_GATEWAY_PSEUDONYM_KEY_FILE") or audit.get("pseudonym_key_file")
        ),
        citizens=load_citizens(gateway_file, data.get("citizens", {}), config_dir),
        batches=load_batches(data.get("batches", {}), config_dir, f"{gateway_file} [batches]", env),
        **_audit_cadence(audit, f"{gateway_file} [audit]"),
        witnessing=witnessing_settings(audit, f"{gateway_file} [audit]", config_dir),
        anomalies=anomaly_settings(audit.get("anomalies", {}), f"{gateway_file} [audit.anomalies]"),
        console=console_settings(data.get("console", {}), f"{gateway_file} [console]", config_dir, env),
        refusals=refusal_settings(data.get("refusals", {}), f"{gateway_file} [refusals]"),
        audit_export_max_bytes=positive(audit, "export_max_bytes", f"{gateway_file} [audit]",
                                        D["audit_export_max_bytes"]),
        **storage_settings(data.get("storage", {}), f"{gateway_file} [storage]", config_dir, env),
        clients=load_clients(config_dir / "clients.toml", purposes, checks, services),
        checks=checks,
        purposes=purposes,
        connectors=connectors,
        services=services,
        simulators=SimulatorSettings(
            seed=env.get("ANSS_GATEWAY_SIMULATOR_SEED") or get(sims, "seed", str, "[simulators]", S["seed"]),
            households=int(get(sims, "households", int, "[simulators]", S["households"])),
            host=get(sims, "host", str, "[simulators]", S["host"]),
            base_port=base_port if base_port is not None else get(sims, "base_port", int, "[simulators]",
                                                                  S["base_port"]),
        ),
    )
