"""The witness's configuration (one small TOML file) and its own Ed25519 key.

```toml
name = "cndp.ma/witness"          # the witness's key name, in its cosignatures and verifier key
listen = "127.0.0.1:7380"         # host:port of the HTTP service
state_dir = "/var/lib/anss-witness"   # its SQLite state (witness.sqlite3); relative paths: to this file
key_file = "witness-key.pem"      # its private key (PKCS#8 PEM, Ed25519), created once if absent;
                                  # relative paths: to state_dir

[[logs]]                          # one table per log it witnesses
origin = "anss.gov.ma/access-log" # the checkpoint origin line
vkeys = ["anss.gov.ma/access-log+4f372b3b+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"]
```

A log's ``vkeys`` are signed-note verifier keys of type 0x01 (Ed25519); several are allowed so a log can rotate.
Every mistake is a ``ConfigError`` naming the file, line and setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoint import (
    COSIGNATURE_V1,
    ED25519,
    CheckpointError,
    VerifierKey,
    key_id,
    parse_verifier_key,
)
from gateway.audit.checkpoint import verifier_key as make_verifier_key
from gateway.config.toml import ConfigError, get, line_of, read_table, resolve
from gateway.crypto import keys

STATE_FILE = "witness.sqlite3"


@dataclass(frozen=True, slots=True)
class WitnessedLog:
    """A log the witness accepts checkpoints of: its origin line and the keys that sign them."""

    origin: str
    vkeys: tuple[VerifierKey, ...]


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    name: str
    host: str
    port: int
    state_dir: Path
    key_file: Path
    logs: tuple[WitnessedLog, ...]

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def log(self, origin: str) -> WitnessedLog | None:
        return next((entry for entry in self.logs if entry.origin == origin), None)


def load_config(path: Path) -> WitnessConfig:
    table = read_table(path)
    base = path.resolve().parent
    name = get(table, "name", str, line_of(path, "name"))
    try:
        key_id(name, COSIGNATURE_V1, bytes(32))  # checks the name
    except CheckpointError as exc:
        raise ConfigError(f"{line_of(path, 'name')}: `name` {exc}") from exc
    listen = get(table, "listen", str, line_of(path, "listen"), "127.0.0.1:7380")
    host, port = _listen(listen, line_of(path, "listen"))
    state_dir = resolve(base, get(table, "state_dir", str, line_of(path, "state_dir")))
    if state_dir is None:
        raise ConfigError(f"{line_of(path, 'state_dir')}: `state_dir` must not be empty")
    key_file = resolve(state_dir, get(table, "key_file", str, line_of(path, "key_file"), "witness-key.pem"))
    if key_file is None:
        raise ConfigError(f"{line_of(path, 'key_file')}: `key_file` must not be empty")
    entries = get(table, "logs", list, f"{path}: [[logs]]", [])
    logs: list[WitnessedLog] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: `logs` must be [[logs]] tables")
        logs.append(_log(path, entry))
    origins = [entry.origin for entry in logs]
    duplicate = next((o for o in origins if origins.count(o) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"{line_of(path, duplicate)}: origin {duplicate!r} is configured twice")
    unknown = set(table) - {"name", "listen", "state_dir", "key_file", "logs"}
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return WitnessConfig(name, host, port, state_dir, key_file, tuple(logs))


def _listen(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: `listen` must be host:port")
    return host.strip("[]"), int(port)


def _log(path: Path, entry: dict[str, object]) -> WitnessedLog:
    origin = get(entry, "origin", str, f"{path}: [[logs]]")
    where = line_of(path, origin)
    if not origin or "\n" in origin:
        raise ConfigError(f"{where}: `origin` must be a non-empty line")
    texts = get(entry, "vkeys", list, where)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ConfigError(f"{where}: `vkeys` must be a non-empty list of verifier keys")
    vkeys = []
    for text in texts:
        try:
            vkey = parse_verifier_key(text)
        except CheckpointError as exc:
            raise ConfigError(f"{line_of(path, text)}: verifier key of {origin!r}: {exc}") from exc
        if vkey.key_type != ED25519:
            raise ConfigError(f"{line_of(path, text)}: a log's verifier key must be Ed25519 (type 0x01)")
        vkeys.append(vkey)
    extra = set(entry) - {"origin", "vkeys"}
    if extra:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(extra))} for log {origin!r}")
    return WitnessedLog(origin, tuple(vkeys))


def load_witness_key(path: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """The witness's private key: read from ``path`` (created once, mode 0600, when absent and ``create``)."""
    try:
        key = (keys.load_or_create(path, "EdDSA") if create else keys.load_private_pem(path)).private
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: the witness key file does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read or create the witness key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the witness key must be Ed25519")
    return key


def witness_verifier_key(config: WitnessConfig, key: Ed25519PrivateKey) -> VerifierKey:
    """The witness's verifier key (type 0x04), what logs and auditors configure to check its cosignatures."""
    return make_verifier_key(config.name, key, COSIGNATURE_V1)
