"""``[audit]`` checkpoint and witness settings: the checkpoint key and origin, the high-water file, the
witnesses (``[[audit.witnesses]]``: url and verifier key) and the quorum (docs/merkle-log.md, "Witnesses")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config.toml import ConfigError, get, resolve

if TYPE_CHECKING:
    from gateway.audit.checkpoint import VerifierKey


@dataclass(frozen=True)
class WitnessSetting:
    url: str
    vkey: VerifierKey


@dataclass(frozen=True)
class WitnessingSettings:
    origin: str | None = None  # the checkpoints' origin line; None: the log id (``<gateway id>.access``)
    checkpoint_key_file: Path | None = None  # Ed25519 PEM, created once; None: state_dir/checkpoint-key.pem
    high_water_file: Path | None = None  # None: beside the checkpoint key, ``<key name>.high-water``
    witnesses: tuple[WitnessSetting, ...] = ()
    quorum: int = 0
    timeout_s: float = 5.0

    def key_path(self, state_dir: Path) -> Path:
        return self.checkpoint_key_file or state_dir / "checkpoint-key.pem"

    def high_water_path(self, state_dir: Path) -> Path:
        return self.high_water_file or self.key_path(state_dir).with_suffix(".high-water")


def witnessing_settings(audit: Mapping[str, Any], where: str, config_dir: Path) -> WitnessingSettings:
    # imported here: gateway.audit's package imports the settings module, which imports this one
    from gateway.audit.checkpoint import COSIGNATURE_V1, CheckpointError, parse_verifier_key

    origin = get(audit, "checkpoint_origin", str, where, "") or None
    if origin is not None and ("\n" in origin or not origin.strip()):
        raise ConfigError(f"{where}: `checkpoint_origin` must be one non-empty line")
    if origin is not None and ("+" in origin or any(c.isspace() or ord(c) < 0x20 for c in origin)):
        # the origin is also the name of the key that signs the checkpoints (signed-note key names)
        raise ConfigError(f"{where}: `checkpoint_origin` names the checkpoints' signing key: no spaces or '+'")
    entries = get(audit, "witnesses", list, where, [])
    witnesses = []
    for number, entry in enumerate(entries, start=1):
        here = f"{where} [[audit.witnesses]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{here}: must be a table with `url` and `vkey`")
        url, text = get(entry, "url", str, here), get(entry, "vkey", str, here)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{here}: `url` must be http(s)")
        try:
            vkey = parse_verifier_key(text)
        except CheckpointError as exc:
            raise ConfigError(f"{here}: `vkey`: {exc}") from exc
        if vkey.key_type != COSIGNATURE_V1:
            raise ConfigError(f"{here}: `vkey` must be a witness cosignature key (type 0x04, base64 starting 'B')")
        extra = set(entry) - {"url", "vkey"}
        if extra:
            raise ConfigError(f"{here}: unknown setting(s) {', '.join(sorted(extra))}")
        witnesses.append(WitnessSetting(url, vkey))
    names = [w.vkey.name for w in witnesses]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: two witnesses share a key name")
    quorum = get(audit, "witness_quorum", int, where, 1 if witnesses else 0)
    if not 0 <= quorum <= len(witnesses):
        raise ConfigError(f"{where}: `witness_quorum` must be between 0 and the number of witnesses")
    timeout_s = get(audit, "witness_timeout_s", float, where, 5.0)
    if timeout_s <= 0:
        raise ConfigError(f"{where}: `witness_timeout_s` must be > 0")
    return WitnessingSettings(
        origin=origin,
        checkpoint_key_file=resolve(config_dir, get(audit, "checkpoint_key_file", str, where, "") or None),
        high_water_file=resolve(config_dir, get(audit, "high_water_file", str, where, "") or None),
        witnesses=tuple(witnesses), quorum=quorum, timeout_s=timeout_s)
