"""Reading the configuration files: TOML tables, typed values, and mistakes that name their file and line.

TOML parsers report no positions, so ``line_of`` finds a mistake in the file's text; every loader raises
``ConfigError`` with ``file:line`` and the setting.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration is wrong; the message names the file and the setting."""

LANGUAGES = ("fr", "en")

def read_table(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc

def get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
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

def line_of(path: Path, *needles: str, after: str | None = None) -> str:
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

def resolve(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path

def by_language(table: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    """The optional translations ``<key>_fr``, ``<key>_en`` of a display text, by language."""
    texts = {lang: get(table, f"{key}_{lang}", str, where, "") for lang in LANGUAGES}
    return {lang: text for lang, text in texts.items() if text.strip()}

def positive(table: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value: int = get(table, key, int, where, default)
    if value < 1:
        raise ConfigError(f"{where}: `{key}` must be a positive integer")
    return value
