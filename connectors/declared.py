"""Operations declared in configuration: parameters, templates and typed reply fields, shared by both kinds.

An administration's TOML file lists its operations under ``[operations.<name>]``. What every kind reads the
same way lives here; what is particular to a kind (a REST path and method, a SOAP operation and its WSDL
types) is read by that kind (``connectors.rest``, ``connectors.soap``). Everything is checked when the
connector is built, at start-up; a mistake raises ``ConnectorConfigError`` naming the setting, which the
gateway turns into one line naming the file and the line.

Parameters (``params.<name> = { required, identifier, pattern, description }``) are strings. ``one_of``
lists parameters of which exactly one must be given (``person`` by ``idcs`` or ``cin``). A parameter marked
``identifier`` names a person: the access log keeps only its pseudonym.

Templates are strings with ``{param}`` placeholders (a path, a query value, a SOAP argument, a JSON body
value). A value that is exactly one placeholder of a parameter that was not given is left out.

Fields (``[operations.<name>.fields]``) map the reply onto the canonical record, one entry per record
property::

    first_name = "person.firstName"                          # a required text
    death_date = { at = "person.deathDate", type = "date", optional = true }
    scheme     = { at = "coverage.scheme", type = "enum", map = { AMO_TADAMON = "amo_tadamon" } }
    months     = { each = "declarations", fields = { month = "month", days = { at = "days", type = "int" } } }
    members    = { each = "/household/members", at = "/idcs" }            # a list of values

``at`` is a JSON Pointer (RFC 6901) into a REST reply, or a dotted path into a parsed SOAP reply; inside
``each`` it is relative to the item (``each`` with ``fields`` makes a list of objects, ``each`` with ``at`` a
list of values). Types: ``text`` (the default: a non-empty string), ``date`` (ISO
``YYYY-MM-DD``), ``bool``, ``int``, ``decimal`` (a number), ``enum`` (the reply's value looked up in
``map``). A value of the wrong type, or a required value that is absent, makes the answer malformed: nothing
is ever filled in by guess. The record's fields must be exactly its JSON Schema's properties.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol, TypeVar

from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped,unused-ignore]

from connectors.base import ConnectorConfig, ConnectorConfigError
from connectors.transport import record_validators

TYPES = ("text", "date", "bool", "int", "decimal", "enum")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class MissingValue(ValueError):
    """A required reply value is absent or of the wrong type (the answer is malformed)."""


# ---------------------------------------------------------------- small readers of the raw tables


def table_of(value: Any, setting: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConnectorConfigError(setting, "must be a table")
    return value


def text_of(table: Mapping[str, Any], key: str, setting: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConnectorConfigError(f"{setting}.{key}", "is required")
    if not isinstance(value, str) or not value:
        raise ConnectorConfigError(f"{setting}.{key}", "must be a non-empty string")
    return value


def refuse_unknown(table: Mapping[str, Any], allowed: Iterable[str], setting: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConnectorConfigError(f"{setting}.{unknown[0]}", f"unknown setting; allowed: {sorted(allowed)}")


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    required: bool
    identifier: bool
    pattern: re.Pattern[str] | None
    description: str


@dataclass(frozen=True, slots=True)
class Params:
    """The parameters an operation takes; ``check`` refuses a call that does not fit them (``ValueError``)."""

    params: Mapping[str, Param]
    one_of: tuple[str, ...] = ()

    def check(self, given: Mapping[str, str]) -> None:
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}")
        missing = [p.name for p in self.params.values() if p.required and given.get(p.name) is None]
        if missing:
            raise ValueError(f"missing parameter {missing[0]!r}")
        for p in self.params.values():
            value = given.get(p.name)
            if value is None:
                continue
            if not isinstance(value, str) or (p.pattern is not None and not p.pattern.fullmatch(value)):
                raise ValueError(f"parameter {p.name!r} is not of the expected form")
        if self.one_of and sum(1 for name in self.one_of if given.get(name) is not None) != 1:
            raise ValueError(f"exactly one of {list(self.one_of)} is required")

    @property
    def identifiers(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params.values() if p.identifier)


def parse_params(op: Mapping[str, Any], setting: str) -> Params:
    raw = table_of(op.get("params", {}), f"{setting}.params")
    one_of = op.get("one_of", [])
    if not isinstance(one_of, list) or not all(isinstance(n, str) for n in one_of) or len(one_of) == 1:
        raise ConnectorConfigError(f"{setting}.one_of", "must be a list of at least two parameter names")
    params: dict[str, Param] = {}
    for name, spec in raw.items():
        where = f"{setting}.params.{name}"
        if not _PARAM_NAME.match(name):
            raise ConnectorConfigError(where, "a parameter name is letters, digits and _")
        spec = table_of(spec, where)
        refuse_unknown(spec, ("required", "identifier", "pattern", "description"), where)
        for flag in ("required", "identifier"):
            if not isinstance(spec.get(flag, True), bool):
                raise ConnectorConfigError(f"{where}.{flag}", "must be true or false")
        pattern = spec.get("pattern")
        compiled = None
        if pattern is not None:
            try:
                compiled = re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise ConnectorConfigError(f"{where}.pattern", f"not a regular expression ({exc})") from None
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise ConnectorConfigError(f"{where}.description", "must be a string")
        params[name] = Param(name, bool(spec.get("required", name not in one_of)), bool(spec.get("identifier", False)),
                             compiled, description)
    for name in one_of:
        if name not in params:
            raise ConnectorConfigError(f"{setting}.one_of", f"names {name!r}, which is not among the params")
        if params[name].required:
            raise ConnectorConfigError(f"{setting}.params.{name}.required", "a one_of parameter cannot be required")
    return Params(params, tuple(one_of))


# ---------------------------------------------------------------- templates


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def check_template(template: Any, params: Params, setting: str, *, whole_only: bool = False) -> None:
    """Every placeholder names a declared parameter; one that may be absent must stand alone (then the value is
    left out), and ``whole_only`` templates (a path) take only required parameters."""
    if isinstance(template, Mapping):
        for key, value in template.items():
            check_template(value, params, f"{setting}.{key}")
        return
    if isinstance(template, list):
        for i, value in enumerate(template):
            check_template(value, params, f"{setting}[{i}]")
        return
    if not isinstance(template, str):
        return  # a literal number or boolean
    for name in placeholders(template):
        param = params.params.get(name)
        if param is None:
            raise ConnectorConfigError(setting, f"{{{name}}} is not a declared parameter")
        if not param.required and (whole_only or template != f"{{{name}}}"):
            raise ConnectorConfigError(setting, f"optional parameter {{{name}}} must be the whole value")


_ABSENT = object()


def fill(template: Any, given: Mapping[str, str], quote: Callable[[str], str] = str) -> Any:
    """The template with its placeholders replaced (each value passed through ``quote``); a value that is one
    placeholder of an absent parameter is left out of its table."""
    if isinstance(template, Mapping):
        out = {k: fill(v, given, quote) for k, v in template.items()}
        return {k: v for k, v in out.items() if v is not _ABSENT}
    if isinstance(template, list):
        return [v for v in (fill(v, given, quote) for v in template) if v is not _ABSENT]
    if not isinstance(template, str):
        return template
    whole = _PLACEHOLDER.fullmatch(template)
    if whole and given.get(whole.group(1)) is None:
        return _ABSENT
    return _PLACEHOLDER.sub(lambda m: quote(given[m.group(1)]), template)


# ---------------------------------------------------------------- reply fields


@dataclass(frozen=True, slots=True)
class Field:
    """One record property read from the reply: where (``at``, parsed per kind), its type, or a list."""

    name: str
    at: tuple[str, ...]
    type: str
    optional: bool
    values: Mapping[str, Any] | None = None
    items: tuple[Field, ...] | None = None  # a list of objects: ``at`` leads to the repeated items
    item: Field | None = None  # a list of values: ``at`` leads to the items, ``item.at`` to each one's value


Getter = Callable[[Any, tuple[str, ...]], Any]
"""Follows a parsed ``at`` path into a reply; returns None when a step is absent."""


def parse_fields(raw: Any, setting: str, split: Callable[[str, str], tuple[str, ...]]) -> tuple[Field, ...]:
    """The ``fields`` table; ``split(path, setting)`` parses one ``at``/``each`` path for the kind."""
    fields = []
    for name, spec in table_of(raw, setting).items():
        where = f"{setting}.{name}"
        if isinstance(spec, str):
            fields.append(Field(name, split(spec, where), "text", False))
            continue
        spec = table_of(spec, where)
        if "each" in spec and "at" in spec:  # a list of values: each item's value at `at`
            refuse_unknown(spec, ("each", "at", "type", "map", "optional"), where)
            item_spec = {k: v for k, v in spec.items() if k in ("at", "type", "map")}
            (item,) = parse_fields({name: item_spec}, setting, split)
            fields.append(Field(name, split(text_of(spec, "each", where), f"{where}.each"), "list",
                                _flag(spec, "optional", where), item=item))
            continue
        if "each" in spec:
            refuse_unknown(spec, ("each", "fields", "optional"), where)
            items = parse_fields(spec.get("fields", {}), f"{where}.fields", split)
            if not items:
                raise ConnectorConfigError(f"{where}.fields", "a list needs the fields of its items")
            fields.append(Field(name, split(text_of(spec, "each", where), f"{where}.each"), "list",
                                _flag(spec, "optional", where), items=items))
            continue
        refuse_unknown(spec, ("at", "type", "optional", "map"), where)
        kind = spec.get("type", "text")
        if kind not in TYPES:
            raise ConnectorConfigError(f"{where}.type", f"unknown type {kind!r}; known: {list(TYPES)}")
        values = None
        if kind == "enum":
            values = table_of(spec.get("map"), f"{where}.map")
            if not values:
                raise ConnectorConfigError(f"{where}.map", "an enum needs its map of reply values")
        elif "map" in spec:
            raise ConnectorConfigError(f"{where}.map", "only an enum has a map")
        fields.append(Field(name, split(text_of(spec, "at", where), f"{where}.at"), kind,
                            _flag(spec, "optional", where), values))
    return tuple(fields)


def _flag(spec: Mapping[str, Any], key: str, where: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ConnectorConfigError(f"{where}.{key}", "must be true or false")
    return value


def read_fields(reply: Any, fields: tuple[Field, ...], get: Getter) -> dict[str, Any]:
    """The record data; ``MissingValue`` when the reply does not hold what the fields promise."""
    return {f.name: _read(reply, f, get) for f in fields}


def _read(reply: Any, f: Field, get: Getter) -> Any:
    value = get(reply, f.at)
    if value is None:
        if f.items is not None or f.item is not None:
            return []  # an empty repeated group (zeep reads ``<spouses/>`` as None)
        if f.optional:
            return None
        raise MissingValue(f"{f.name}: missing")
    if f.items is not None:
        if not isinstance(value, list):
            raise MissingValue(f"{f.name}: not a list")
        return [read_fields(item, f.items, get) for item in value]
    if f.item is not None:
        if not isinstance(value, list):
            raise MissingValue(f"{f.name}: not a list")
        return [_read(item, f.item, get) for item in value]
    return _typed(value, f)


def _typed(value: Any, f: Field) -> Any:
    if f.type == "text" and isinstance(value, str) and value:
        return value
    if f.type == "date":
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str) and _ISO_DATE.match(value):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
    if f.type == "bool" and isinstance(value, bool):
        return value
    if f.type == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if f.type == "decimal" and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value if isinstance(value, int) else float(value)
    if f.type == "enum" and f.values is not None and isinstance(value, str) and value in f.values:
        return f.values[value]
    raise MissingValue(f"{f.name}: not a {f.type}")


# ---------------------------------------------------------------- what an operation is, for its callers


@dataclass(frozen=True, slots=True)
class OperationInfo:
    """An operation as its callers see it (the services catalogue, OpenAPI): its parameters (None when a
    Python mapping declares none), the record it yields and that record's JSON Schema, a one-line summary."""

    name: str
    record_kind: str
    record_schema: Mapping[str, Any]
    params: Params | None
    summary: str = ""


# ---------------------------------------------------------------- record schemas


@dataclass(frozen=True, slots=True)
class RecordSchema:
    kind: str
    validator: Draft202012Validator
    properties: frozenset[str]
    required: frozenset[str]
    items: Mapping[str, frozenset[str]]  # for array properties of objects: their properties


def record_schema(root: Path, kind: str, path: str | None, setting: str) -> RecordSchema:
    """The record's JSON Schema: ``path`` (absolute or from the project root), else ``schemas/records/<kind>.json``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise ConnectorConfigError(f"{setting}.record", "a record name is lower-case letters, digits and _")
    schema_path = (root / path) if path else root / "schemas" / "records" / f"{kind}.json"
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except OSError:
        raise ConnectorConfigError(f"{setting}.record_schema" if path else f"{setting}.record",
                                   f"record schema {schema_path} not found") from None
    except (ValueError, SchemaError) as exc:
        raise ConnectorConfigError(f"{setting}.record_schema" if path else f"{setting}.record",
                                   f"record schema {schema_path} is not a JSON Schema ({str(exc).splitlines()[0]})"
                                   ) from None
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    items = {name: frozenset(spec["items"].get("properties", {}))
             for name, spec in props.items()
             if isinstance(spec, dict) and isinstance(spec.get("items"), dict) and "properties" in spec["items"]}
    return RecordSchema(kind, Draft202012Validator(schema), frozenset(props), frozenset(schema.get("required", ())),
                        items)


def check_fields_fit(fields: tuple[Field, ...], schema: RecordSchema, setting: str) -> None:
    """The fields are the record's properties: none unknown to the schema, none of its required ones missing."""
    names = {f.name for f in fields}
    for name in sorted(names - schema.properties) if schema.properties else []:
        raise ConnectorConfigError(f"{setting}.{name}", f"the {schema.kind} record has no property {name!r}")
    missing = sorted(schema.required - names)
    if missing:
        raise ConnectorConfigError(setting, f"the {schema.kind} record requires {missing} and no field gives them")
    for f in fields:
        if f.items is not None and f.name in schema.items:
            for item in f.items:
                if item.name not in schema.items[f.name]:
                    raise ConnectorConfigError(f"{setting}.{f.name}.fields.{item.name}",
                                               f"the items of {f.name!r} have no property {item.name!r}")


# ---------------------------------------------------------------- an administration's operations, either way


class _Operation(Protocol):
    @property
    def record_kind(self) -> str: ...


OperationT = TypeVar("OperationT", bound=_Operation)


def mapping_operations(config: ConnectorConfig, kind: type[OperationT]) -> dict[str, OperationT]:
    """The escape hatch: a Python module named by ``mapping`` that defines ``OPERATIONS: dict[str, kind]``."""
    try:
        module = import_module(str(config.mapping))
    except ImportError as exc:
        raise ConnectorConfigError("mapping", f"cannot import {config.mapping!r} ({exc})") from None
    operations = getattr(module, "OPERATIONS", None)
    if not isinstance(operations, dict) or not all(isinstance(op, kind) for op in operations.values()):
        raise ConnectorConfigError("mapping", f"{config.mapping!r} must define OPERATIONS: dict[str, {kind.__name__}]")
    return dict(operations)


def load_operations(
    config: ConnectorConfig, root: Path, kind: type[OperationT],
    declare: Callable[[str, Any], tuple[OperationT, Any]],
) -> tuple[dict[str, OperationT], dict[str, Any], dict[str, str]]:
    """An administration's operations — declared in ``[operations]`` (each read by ``declare``) or from its
    ``mapping`` module — with one record validator per operation and each one's summary."""
    summaries = {name: str(table.get("summary", "")) for name, table in config.operations.items()
                 if isinstance(table, Mapping)}
    if config.mapping:
        if config.operations:
            raise ConnectorConfigError("mapping", "give either `mapping` or [operations], not both")
        operations = mapping_operations(config, kind)
        by_kind = record_validators(root, (op.record_kind for op in operations.values()), f"connector {config.name!r}")
        return operations, {name: by_kind[op.record_kind] for name, op in operations.items()}, summaries
    declared: dict[str, OperationT] = {}
    validators: dict[str, Any] = {}
    for name, table in table_of(config.operations, "operations").items():
        declared[name], validators[name] = declare(name, table)
    if not declared:
        raise ConnectorConfigError("operations", "an administration needs at least one operation")
    return declared, validators, summaries
