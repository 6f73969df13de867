"""Dated rule parameters in OpenFisca's YAML parameter format, and which values are in force on a date.

What loads (OpenFisca's format, https://openfisca.org/doc/coding-the-legislation/legislation_parameters.html):

- A tree is a directory. A sub-directory is a *node*; its optional ``index.yaml`` (may be empty) holds
  ``description``, ``metadata``, ``documentation`` and the older top-level ``unit`` / ``reference``, all
  optional. Any other ``*.yaml`` / ``*.yml`` file is a *parameter* or a *node* written as one file (its keys
  other than those five are its children). Names are paths with dots (``children.ranks_1_3.not_in_school``).
- A parameter has ``values``, a mapping of dates (``YYYY-MM-DD``) to a value, and optionally ``description``,
  ``metadata`` (any keys; ``unit`` and ``reference`` are read), ``documentation``, ``unit`` and ``reference``.
  A file of dates alone (no ``values``) is a parameter too. A value is written plain (``2023-12-01: 150``,
  ``2030-01-01: null``) or as ``{value, metadata, unit, reference}``; an entry marked ``expected`` is skipped.
- A value is a number, ``true``/``false`` or ``null``; it applies from its date until the next one, and
  ``null`` means no value from then (the parameter is absent, not the others). Not supported, refused:
  scales (``brackets``), lists of values, non-finite numbers.
- A reference is a text, ``{title, href}``, a list of those, or, on a parameter, a mapping of dates to those
  (the one of the latest date on or before a value's date applies to it); it is normalised to one text.

The project's one addition: every value in force must name its legal basis, its own reference or its
parameter's (``metadata.reference`` or ``reference``), since every amount paid must cite the text it comes
from. Every mistake is found when the tree loads (duplicate keys, a name defined twice, a date not written
``YYYY-MM-DD``, a value of the wrong kind for the evaluator reading it: ``ParameterTree.require``) and is
reported in one line naming the file and the key (``ParameterError``). Loading reads files (do it at
start-up, never on the event loop's hot path); ``in_force`` is pure.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from gateway.config.toml import ConfigError

__all__ = ["Parameter", "ParameterError", "ParameterTree", "Snapshot", "load"]

Value = int | float | bool
_COMMON_KEYS = frozenset({"description", "metadata", "documentation", "unit", "reference"})
_PARAMETER_KEYS = _COMMON_KEYS | {"values"}
_VALUE_KEYS = frozenset({"value", "metadata", "unit", "reference"})
_REFERENCE_KEYS = frozenset({"title", "href"})
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR_FIRST = re.compile(r"[0-9]{4}")
MAX_INTEGER = 2**53  # beyond, a number is no longer exact in a JSON reader (nor encodable by the answer's)
MAX_NESTING = 32  # mappings and lists within a file (a YAML alias may even make one contain itself)
MAX_ITEMS = 100_000  # items in a file, its aliases written out (a few anchors can stand for billions)
_EXTENSIONS = (".yaml", ".yml")
IN_FORCE_CACHE = 64  # dates whose snapshot a tree keeps

# A parameter-level reference: (from which date, or None for all, text), by date
_Dated = tuple[tuple[date | None, str], ...]


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but an ISO date stays text (this module parses it and names the key if it is wrong),
    and a mapping with a key twice is refused."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            raise ConstructorError(None, None, "a key must be a plain value", key_node.start_mark) from None
        if first is not None:
            raise ConstructorError(None, None, f"duplicate key {key!r} (first on line {first})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    data: dict[Any, Any] = {}
    yield data
    data.update(loader.construct_mapping(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _unique_keys)


class ParameterError(ConfigError):
    """A parameter file is not valid; the message names the file and the key."""


@dataclass(frozen=True)
class Parameter:
    """One parameter: its values by effective date (ascending), each with its legal reference."""

    name: str
    description: str  # "" when none
    unit: str  # "" when none
    reference: str  # the parameter's own reference ("" when none; dated ones joined, each with its date)
    dates: tuple[date, ...]
    values: tuple[Value | None, ...]
    references: tuple[str, ...]  # each value's: its own, else the parameter's ("" for a null)
    bases: tuple[str, ...]  # each value's: the parameter's on its date, else the value's own ("" for a null)
    file: Path  # where it is defined, and the key of each value there (for messages)
    keys: tuple[str, ...]

    def at(self, on: date) -> tuple[date, Value, str] | None:
        """(effective date, value, reference) in force on ``on``, or None before the first or after an end."""
        i = self._index(on)
        if i is None:
            return None
        value = self.values[i]
        assert value is not None
        return self.dates[i], value, self.references[i]

    def _index(self, on: date) -> int | None:
        i = bisect_right(self.dates, on) - 1
        return None if i < 0 or self.values[i] is None else i


@dataclass(frozen=True)
class Snapshot:
    """The parameters in force on one date (one without a value then is absent): ``values[name]``, since when
    each applies, each one's legal reference (``references``: the parameter's, else its value's) and the
    reference of the value in force (``value_references``: its own, else the parameter's)."""

    on: date
    values: Mapping[str, Value]
    since: Mapping[str, date]
    references: Mapping[str, str]
    value_references: Mapping[str, str]
    required: frozenset[str] = frozenset()
    # what an answer cites for a value (``legal_reference``): the parameter's reference, then the value's own
    # when it has a different one ("<parameter's>; <value's>"): the law, and the decree that set this amount
    cited: Mapping[str, str] = field(default_factory=dict)

    @property
    def effective_from(self) -> date:
        """The date of the rate table in use: the latest effective date among the values an evaluator reads
        (``ParameterTree.require``), or among all in force when it named none."""
        return max(self.since[n] for n in self.required) if self.required else max(self.since.values())

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
    """Every parameter of a tree, by dotted name, and those an evaluator requires (``require``)."""

    root: Path
    description: str
    parameters: Mapping[str, Parameter]
    required: frozenset[str] = frozenset()
    # in_force by date, worked out once per date (a verification asks it twice, and most ask for today); the tree
    # is immutable, so an entry never goes stale; bounded, since callers choose past dates (``as_of``)
    _in_force: dict[date, Snapshot | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def in_force(self, on: date) -> Snapshot | None:
        """The values in force on ``on``; None if a required parameter has none then, or no parameter has."""
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
        references: dict[str, str] = {}
        value_references: dict[str, str] = {}
        for name, parameter in self.parameters.items():
            i = parameter._index(on)
            if i is not None:
                value = parameter.values[i]
                assert value is not None
                values[name], since[name] = value, parameter.dates[i]
                references[name], value_references[name] = parameter.bases[i], parameter.references[i]
        if not values or not self.required <= values.keys():
            return None
        cited = {name: base if value_references[name] in ("", base) else f"{base}; {value_references[name]}"
                 for name, base in references.items()}
        return Snapshot(on, MappingProxyType(values), MappingProxyType(since), MappingProxyType(references),
                        MappingProxyType(value_references), self.required, MappingProxyType(cited))

    def require(self, names: Mapping[str, type]) -> ParameterTree:
        """This tree, checked to hold every parameter an evaluator reads with values of the kind it reads them as
        (``bool``: true/false; ``int``: a whole number; ``float``: a number); its snapshots are then None on a
        date one of them has no value, and date the rate table by them alone."""
        for name, kind in names.items():
            parameter = self.parameters.get(name)
            if parameter is None:
                where = self.root / (name.replace(".", "/") + ".yaml")
                raise ParameterError(f"{where}: missing: the parameter {name!r} is required")
            for key, value in zip(parameter.keys, parameter.values, strict=True):
                if value is None:
                    continue
                if kind is bool and not isinstance(value, bool):
                    raise ParameterError(f"{parameter.file}: {key}: must be true or false")
                if kind is not bool and isinstance(value, bool):
                    raise ParameterError(f"{parameter.file}: {key}: must be a number")
                if kind is int and value != int(value):
                    raise ParameterError(f"{parameter.file}: {key}: must be a whole number ({name} is an int)")
        return replace(self, required=frozenset(names))


def load(root: Path) -> ParameterTree:
    """The tree under ``root``; ``ParameterError`` (one line: file and key) on any mistake."""
    if not root.is_dir():
        raise ParameterError(f"{root}: no such parameter directory")
    parameters: dict[str, Parameter] = {}
    description = _directory(root, "", parameters)
    if not parameters:
        raise ParameterError(f"{root}: no parameter file")
    return ParameterTree(root, description, MappingProxyType(parameters))


def _directory(directory: Path, prefix: str, out: dict[str, Parameter]) -> str:
    """Load the node ``directory`` (names ``prefix``...) into ``out``; its description."""
    entries: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):  # hidden: a repository's .git/, an editor's or a copy's leftovers
            continue
        stem = path.name if path.is_dir() else path.stem if path.suffix in _EXTENSIONS else None
        if stem is None:
            continue
        if stem in entries:
            raise ParameterError(f"{path}: {prefix}{stem}: defined twice (also by {entries[stem].name})")
        entries[stem] = path
    description = ""
    for stem, path in entries.items():
        if stem == "index" and not path.is_dir():
            document = _read(path, empty=True)
            if "brackets" in document:
                raise ParameterError(f"{path}: brackets: scales are not supported (docs/asd.md)")
            _check_keys(path, document, _COMMON_KEYS)
            description = _common(path, document, "")[0]
        elif "." in stem:
            raise ParameterError(f"{path}: {prefix}{stem}: a name cannot contain a dot")
        elif path.is_dir():
            _directory(path, f"{prefix}{stem}.", out)
        else:
            _child(path, prefix + stem, _read(path), "", out)
    return description


def _read(path: Path, empty: bool = False) -> dict[Any, Any]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ParameterError(f"{path}{line}: not valid YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{path}: cannot read: {exc}") from None
    if document is None and empty:
        return {}
    if not isinstance(document, dict):
        raise ParameterError(f"{path}: must be a mapping (a parameter with values, or a node)")
    depth, size = _shape(document)
    if depth > MAX_NESTING:
        raise ParameterError(f"{path}: nested more than {MAX_NESTING} deep (or a YAML alias that contains itself)")
    if size > MAX_ITEMS:
        raise ParameterError(f"{path}: holds more than {MAX_ITEMS} items once its aliases are written out")
    return document


def _shape(node: object) -> tuple[int, int]:
    """(depth, size) of ``node``: how deep its mappings and lists go, and how many items it holds once its YAML
    aliases are written out. A node that contains itself counts as deeper than ``MAX_NESTING``; each mapping or
    list is measured once, however often aliases repeat it."""
    seen: dict[int, tuple[int, int]] = {}
    open_now: set[int] = set()

    def measure(item: object) -> tuple[int, int]:
        if not isinstance(item, dict | list):
            return 0, 1
        key = id(item)
        if key in seen:
            return seen[key]
        if key in open_now or len(open_now) > MAX_NESTING:
            return MAX_NESTING + 1, 1
        open_now.add(key)
        children = [measure(child) for child in (item.values() if isinstance(item, dict) else item)]
        open_now.discard(key)
        seen[key] = (1 + max((d for d, _ in children), default=0), 1 + sum(n for _, n in children))
        return seen[key]

    return measure(node)


def _dated(key: object) -> bool:
    """A key meant as a date (a number, or a text starting with a year's four digits), not as a child's name
    (``1er_enfant`` is a name, as in OpenFisca)."""
    if isinstance(key, str):
        return _YEAR_FIRST.match(key) is not None
    return isinstance(key, int | date) and not isinstance(key, bool)


def _child(path: Path, name: str, data: object, within: str, out: dict[str, Parameter]) -> None:
    """``data``, at ``within`` in ``path``: a parameter (with or without ``values``) or a node of children."""
    if not isinstance(data, dict) or not data:
        where = within.rstrip(".") or name.rsplit(".", 1)[-1]
        raise ParameterError(f"{path}: {where}: must be a non-empty mapping (a parameter or a node)")
    if "brackets" in data:
        raise ParameterError(f"{path}: {within}brackets: scales are not supported (docs/asd.md)")
    if name in out:
        raise ParameterError(f"{path}: {within.rstrip('.') or name}: defined twice")
    if "values" in data or all(_dated(key) for key in data):
        out[name] = _parameter(path, name, data, within)
        return
    _common(path, data, within)
    for key, child in data.items():
        if _dated(key):
            raise ParameterError(f"{path}: {within}{key}: a date beside named keys (put the dates under values:)")
        if not isinstance(key, str) or "." in key:
            raise ParameterError(f"{path}: {within}{key}: a name must be a text without dots")
        if key not in _COMMON_KEYS:
            _child(path, f"{name}.{key}", child, f"{within}{key}.", out)


def _check_keys(path: Path, document: Mapping[Any, Any], allowed: frozenset[str], prefix: str = "") -> None:
    unknown = sorted(str(k) for k in document if k not in allowed)
    if unknown:
        raise ParameterError(f"{path}: {prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _text(path: Path, value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{path}: {where}: must be a non-empty text")
    return value.strip()


def _pick(path: Path, data: Mapping[Any, Any], key: str, within: str) -> tuple[object, str]:
    """``metadata.<key>``, else the older top-level ``<key>`` (the metadata wins, as in OpenFisca), and where."""
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ParameterError(f"{path}: {within}metadata: must be a mapping")
    if metadata.get(key) is not None:
        return metadata[key], f"{within}metadata.{key}"
    return data.get(key), f"{within}{key}"


def _common(path: Path, data: Mapping[Any, Any], within: str) -> tuple[str, str, _Dated]:
    """(description, unit, reference) of a node or a parameter; each optional, checked when given."""
    texts = ["" if data.get(k) in (None, "") else _text(path, data[k], within + k)  # (OpenFisca takes "" too)
             for k in ("description", "documentation")]
    unit, where = _pick(path, data, "unit", within)
    raw, at = _pick(path, data, "reference", within)
    if raw is None:
        reference: _Dated = ()
    elif isinstance(raw, dict) and all(_dated(k) for k in raw):
        reference = tuple(sorted((_day(path, at + ".", k), _reference(path, v, f"{at}.{k}")) for k, v in raw.items()))
    else:
        reference = ((None, _reference(path, raw, at)),)
    return texts[0], "" if unit is None else _text(path, unit, where), reference


def _reference(path: Path, raw: object, where: str) -> str:
    """A reference (a text, ``{title, href}``, or a non-empty list of those) as one text."""
    if isinstance(raw, list) and raw:
        return "; ".join(_reference(path, item, f"{where}[{i}]") for i, item in enumerate(raw))
    if isinstance(raw, dict) and raw and raw.keys() <= _REFERENCE_KEYS:
        title, href = (_text(path, raw[k], f"{where}.{k}") if k in raw else "" for k in ("title", "href"))
        return f"{title} ({href})" if title and href else title or href
    if isinstance(raw, str):
        return _text(path, raw, where)
    raise ParameterError(f"{path}: {where}: must be a text, {{title, href}}, or a list of those")


def _inherited(reference: _Dated, day: date) -> str:
    found = [text for since, text in reference if since is None or since <= day]
    return found[-1] if found else ""


def _parameter(path: Path, name: str, data: Mapping[Any, Any], within: str) -> Parameter:
    if "values" in data:
        _check_keys(path, data, _PARAMETER_KEYS, within)
        description, unit, reference = _common(path, data, within)
        values, prefix = data["values"], f"{within}values."
        if not isinstance(values, dict) or not values:
            raise ParameterError(f"{path}: {within}values: required, a mapping of dates (YYYY-MM-DD) to values")
    else:  # the simplified form: dates at the top
        description, unit, reference, values, prefix = "", "", (), data, within
    rows: list[tuple[date, Value | None, str, str, str]] = []
    for key, entry in values.items():
        day = _day(path, prefix, key)
        where = f"{prefix}{day.isoformat()}"
        if any(day == row[0] for row in rows):
            raise ParameterError(f"{path}: {where}: defined twice")
        if entry == "expected" or (isinstance(entry, dict) and "expected" in entry):
            continue  # an expected value: metadata, not a value
        own = ""
        if isinstance(entry, dict):
            _check_keys(path, entry, _VALUE_KEYS, where + ".")
            if "value" not in entry:
                raise ParameterError(f"{path}: {where}.value: required")
            value, at = _value(path, entry["value"], where + ".value"), where + ".value"
            unit_given, place = _pick(path, entry, "unit", where + ".")
            if unit_given is not None:
                _text(path, unit_given, place)
            raw, place = _pick(path, entry, "reference", where + ".")
            own = "" if raw is None else _reference(path, raw, place)
        else:
            value, at = _value(path, entry, where), where
        inherited = _inherited(reference, day)
        if value is not None and not (own or inherited):
            raise ParameterError(f"{path}: {where}.metadata.reference: required, the legal text of this value "
                                 "(its own, or the parameter's metadata.reference)")
        rows.append((day, value, (own or inherited) if value is not None else "",
                     (inherited or own) if value is not None else "", at))
    rows.sort(key=lambda r: r[0])
    joined = "; ".join(text if since is None else f"{since.isoformat()}: {text}" for since, text in reference)
    return Parameter(name, description, unit, joined, tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                     tuple(r[2] for r in rows), tuple(r[3] for r in rows), path, tuple(r[4] for r in rows))


def _value(path: Path, raw: object, where: str) -> Value | None:
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        if abs(raw) > MAX_INTEGER:
            raise ParameterError(f"{path}: {where}: must be a number from -2^53 to 2^53")
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ParameterError(f"{path}: {where}: must be a finite number")
        return raw
    if isinstance(raw, list):
        raise ParameterError(f"{path}: {where}: lists of values are not supported")
    raise ParameterError(f"{path}: {where}: must be a number, true/false or null")


def _day(path: Path, prefix: str, key: object) -> date:
    if isinstance(key, int) and not isinstance(key, bool):
        raise ParameterError(f"{path}: {prefix}{key}: read as a number, not a date: write it YYYY-MM-DD")
    text = key.isoformat() if isinstance(key, date) else str(key)
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ParameterError(f"{path}: {prefix}{key}: not an ISO date (YYYY-MM-DD)")
