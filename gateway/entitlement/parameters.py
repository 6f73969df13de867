"""Dated rule parameters in OpenFisca's YAML parameter format, and which values are in force on a date.

A tree is a directory. A sub-directory is a *node*; its optional ``index.yaml`` holds ``description``,
``metadata`` and ``documentation``. Any other ``*.yaml`` file is a *parameter* (its name is the path with
dots, e.g. ``children.ranks_1_3.not_in_school``)::

    description: Rank 1–3 child aged 6–20 and not in school
    metadata:
      unit: currency-MAD
      reference: Décrets n° 2.23.1067 et n° 2.23.1068
    values:
      2023-12-01:
        value: 150
        metadata:
          reference: the legal text this value comes from
      2025-11-01:
        value: 175
        reference: ...          # a value's reference may also sit beside it

A value applies from its date until the next one; ``value: null`` ends the parameter. Every mistake is
found when the tree loads and reported in one line naming the file and the key (``ParameterError``).
Loading reads files (do it at start-up, never on the event loop's hot path); ``in_force`` is pure.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gateway.config.toml import ConfigError

__all__ = ["Parameter", "ParameterError", "ParameterTree", "Snapshot", "load"]

Value = int | float | bool
_PARAMETER_KEYS = frozenset({"description", "metadata", "values", "documentation"})
_NODE_KEYS = frozenset({"description", "metadata", "documentation"})
_VALUE_KEYS = frozenset({"value", "metadata", "reference"})
IN_FORCE_CACHE = 64  # dates whose snapshot a tree keeps


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but an ISO date stays text: this module parses it and names the key if it is wrong."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class ParameterError(ConfigError):
    """A parameter file is not valid; the message names the file and the key."""


@dataclass(frozen=True)
class Parameter:
    """One parameter: its values by effective date (ascending), each with its legal reference."""

    name: str
    description: str
    unit: str
    reference: str
    dates: tuple[date, ...]
    values: tuple[Value | None, ...]
    references: tuple[str, ...]

    def at(self, on: date) -> tuple[date, Value, str] | None:
        """(effective date, value, reference) in force on ``on``, or None before the first or after an end."""
        i = bisect_right(self.dates, on) - 1
        if i < 0 or self.values[i] is None:
            return None
        value = self.values[i]
        assert value is not None
        return self.dates[i], value, self.references[i]


@dataclass(frozen=True)
class Snapshot:
    """The parameters in force on one date: ``values[name]``, since when each applies, each parameter's
    legal reference (``references``) and the reference of the value in force (``value_references``)."""

    on: date
    values: Mapping[str, Value]
    since: Mapping[str, date]
    references: Mapping[str, str]
    value_references: Mapping[str, str]

    @property
    def effective_from(self) -> date:
        """The date of the rate table in use: the latest effective date among the values in force."""
        return max(self.since.values())

    def number(self, name: str) -> float:
        value = self.values[name]
        if isinstance(value, bool):
            raise TypeError(f"{name} is a yes/no parameter")
        return value

    def integer(self, name: str) -> int:
        value = self.number(name)
        if value != int(value):
            raise TypeError(f"{name} is not a whole number")
        return int(value)

    def flag(self, name: str) -> bool:
        value = self.values[name]
        if not isinstance(value, bool):
            raise TypeError(f"{name} is not a yes/no parameter")
        return value


@dataclass(frozen=True)
class ParameterTree:
    """Every parameter of a tree, by dotted name."""

    root: Path
    description: str
    parameters: Mapping[str, Parameter]
    # in_force by date, worked out once per date (a verification asks it twice, and most ask for today); the tree
    # is immutable, so an entry never goes stale; bounded, since callers choose past dates (``as_of``)
    _in_force: dict[date, Snapshot | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def in_force(self, on: date) -> Snapshot | None:
        """The values in force on ``on``; None if any parameter has no value then (before the first date)."""
        try:
            return self._in_force[on]
        except KeyError:
            pass
        if len(self._in_force) >= IN_FORCE_CACHE:
            self._in_force.clear()
        snapshot = self._in_force[on] = self._work_out(on)
        return snapshot

    def _work_out(self, on: date) -> Snapshot | None:
        values: dict[str, Value] = {}
        since: dict[str, date] = {}
        value_references: dict[str, str] = {}
        for name, parameter in self.parameters.items():
            found = parameter.at(on)
            if found is None:
                return None
            since[name], values[name], value_references[name] = found
        references = {name: p.reference for name, p in self.parameters.items()}
        return Snapshot(on, MappingProxyType(values), MappingProxyType(since), MappingProxyType(references),
                        MappingProxyType(value_references))

    def require(self, names: Mapping[str, type]) -> None:
        """Every parameter an evaluator needs is present with values of the right kind (numbers or flags)."""
        for name, kind in names.items():
            parameter = self.parameters.get(name)
            where = self.root / (name.replace(".", "/") + ".yaml")
            if parameter is None:
                raise ParameterError(f"{where}: missing: the parameter {name!r} is required")
            for day, value in zip(parameter.dates, parameter.values, strict=True):
                if value is not None and (kind is bool) != isinstance(value, bool):
                    raise ParameterError(f"{where}: values.{day}.value: must be "
                                         f"{'true or false' if kind is bool else 'a number'}")


def load(root: Path) -> ParameterTree:
    """The tree under ``root``; ``ParameterError`` (one line: file and key) on any mistake."""
    if not root.is_dir():
        raise ParameterError(f"{root}: no such parameter directory")
    parameters: dict[str, Parameter] = {}
    description = ""
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path.suffix not in (".yaml", ".yml"):
            continue
        document = _read(path)
        if path.stem == "index":
            _check_keys(path, document, _NODE_KEYS)
            text = _text(path, document, "description")
            if path.parent == root:
                description = text
            _metadata(path, document, require=("reference",))
            continue
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        parameters[name] = _parameter(path, name, document)
    if not parameters:
        raise ParameterError(f"{root}: no parameter file")
    return ParameterTree(root, description, MappingProxyType(parameters))


def _read(path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ParameterError(f"{path}{line}: not valid YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{path}: cannot read: {exc}") from None
    if not isinstance(document, dict):
        raise ParameterError(f"{path}: must be a mapping (description, metadata, values)")
    return document


def _check_keys(path: Path, document: Mapping[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
    unknown = sorted(str(k) for k in document if k not in allowed)
    if unknown:
        raise ParameterError(f"{path}: {prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _text(path: Path, document: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{path}: {prefix}{key}: required, a non-empty text")
    return value


def _metadata(path: Path, document: Mapping[str, Any], require: tuple[str, ...]) -> dict[str, Any]:
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise ParameterError(f"{path}: metadata: required, a mapping with {' and '.join(require)}")
    for key in require:
        _text(path, metadata, key, "metadata.")
    return metadata


def _parameter(path: Path, name: str, document: Mapping[str, Any]) -> Parameter:
    _check_keys(path, document, _PARAMETER_KEYS)
    description = _text(path, document, "description")
    metadata = _metadata(path, document, require=("unit", "reference"))
    values = document.get("values")
    if not isinstance(values, dict) or not values:
        raise ParameterError(f"{path}: values: required, a mapping of ISO dates to values")
    rows: list[tuple[date, Value | None, str]] = []
    for key, entry in values.items():
        day = _day(path, key)
        where = f"values.{day.isoformat()}."
        if not isinstance(entry, dict):
            raise ParameterError(f"{path}: values.{day.isoformat()}: must be a mapping with value and reference")
        _check_keys(path, entry, _VALUE_KEYS, where)
        if "value" not in entry:
            raise ParameterError(f"{path}: {where}value: required")
        value = entry["value"]
        if value is not None and not isinstance(value, int | float):  # bool is an int
            raise ParameterError(f"{path}: {where}value: must be a number, true/false or null")
        inner = entry.get("metadata")
        if inner is not None and not isinstance(inner, dict):
            raise ParameterError(f"{path}: {where}metadata: must be a mapping")
        reference = (inner or {}).get("reference", entry.get("reference"))
        if not isinstance(reference, str) or not reference.strip():
            raise ParameterError(f"{path}: {where}metadata.reference: required, the legal text of this value")
        rows.append((day, value, reference))
    rows.sort(key=lambda r: r[0])
    if rows[0][1] is None:
        raise ParameterError(f"{path}: values.{rows[0][0].isoformat()}.value: the first value cannot be null")
    return Parameter(name, description, str(metadata["unit"]), str(metadata["reference"]),
                     tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))


def _day(path: Path, key: object) -> date:
    try:
        return date.fromisoformat(str(key))
    except ValueError:
        raise ParameterError(f"{path}: values.{key}: not an ISO date (YYYY-MM-DD)") from None
