"""A copy of the bundled config/ with one edit, for tests of what the settings loader accepts and refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.config.settings import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def config_with(tmp_path: Path, old: str, new: str, file: str = "clients.toml") -> Path:
    """``tmp_path/config`` (copied once) with the first ``old`` of ``file`` replaced by ``new``."""
    config = tmp_path / "config"
    if not config.exists():
        shutil.copytree(ROOT / "config", config)
    path = config / file
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return config


def line_named(error: ConfigError, path: Path) -> str:
    """The line of ``path`` that ``error`` names (``<path>:<line> ...``)."""
    number = int(str(error).split(f"{path}:")[1].split(" ")[0])
    return path.read_text(encoding="utf-8").splitlines()[number - 1]
