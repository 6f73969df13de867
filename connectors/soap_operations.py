"""SOAP operations: the ``SoapOperation`` value, the operations declared in an administration's TOML file
(checked against the WSDL's types), and the typed helpers a Python mapping module (the escape hatch) uses.

``declared_operation`` reads one ``[operations.<name>]`` table (see ``connectors.soap`` for the settings and
``connectors.declared`` for parameters, templates and fields) and checks every path against the types of the
WSDL operation it names, so that a mistake is found at start-up, never on a citizen's request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from zeep.xsd.types import builtins as _zeep_builtins

from connectors.base import ConnectorConfigError
from connectors.declared import (
    Field,
    MissingValue,
    Params,
    check_fields_fit,
    check_template,
    fill,
    parse_fields,
    parse_params,
    read_fields,
    record_schema,
    refuse_unknown,
    table_of,
    text_of,
)


@dataclass(frozen=True, slots=True)
class SoapOperation:
    """One gateway operation answered by a SOAP administration.

    ``soap_operation`` is the WSDL operation name; ``build_args`` turns the query parameters into its
    keyword arguments; ``to_record`` turns zeep's deserialised reply into the ``record_kind`` record's
    data, or returns None when the administration says it does not know the subject.
    """

    soap_operation: str
    record_kind: str
    build_args: Callable[[Mapping[str, str]], dict[str, Any]]
    to_record: Callable[[Any], dict[str, Any] | None]
    params: Params | None = None


# ---------------------------------------------------------------- helpers for mapping modules
# zeep gives back what the reply holds; these insist on the type the contract promises (else ValueError,
# which the connector reports as an unavailable source).


def text(value: Any) -> str:
    """A required, non-empty text value from a reply."""
    if not isinstance(value, str) or not value:
        raise ValueError("missing text value")
    return value


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def iso_date(value: Any) -> str:
    if not isinstance(value, date):
        raise ValueError("missing date value")
    return value.isoformat()


def optional_iso_date(value: Any) -> str | None:
    return None if value is None else iso_date(value)


def _strict_xsd_boolean(self: Any, value: str) -> bool:
    """XML Schema's xs:boolean (``true``, ``false``, ``1``, ``0``, whitespace collapsed); zeep reads anything but
    ``true``/``1`` as false (``True``, ``yes``, ``vrai``…), which would turn a living person's ``alive`` into
    a death. Anything else is refused, and the answer is malformed."""
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError("not an xs:boolean")


# every SOAP reply the connectors parse goes through zeep's one Boolean type (the process parses no other XML
# with zeep), so its reading is made XML Schema's here, once, at import
setattr(_zeep_builtins.Boolean, "pythonvalue",  # noqa: B010  (a method replaced on purpose)
        _zeep_builtins.treat_whitespace("collapse")(_strict_xsd_boolean))  # type: ignore[no-untyped-call]


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("missing boolean value")
    return value


def found(reply: Any) -> bool:
    """True for FOUND, False for NOT_FOUND; anything else is off-contract."""
    if reply.status == "FOUND":
        return True
    if reply.status == "NOT_FOUND":
        return False
    raise ValueError("unknown status")


# ---------------------------------------------------------------- operations declared in configuration

_SOAP_KEYS = ("record", "record_schema", "soap_operation", "params", "one_of", "args", "status", "fields",
              "description", "summary")
_XSD_TYPES = {"text": ("String",), "enum": ("String",), "date": ("Date",), "bool": ("Boolean",),
              "int": ("Integer",), "decimal": ("Decimal", "Float", "Double")}


def split_path(path: str, setting: str) -> tuple[str, ...]:
    """A dotted path into a parsed reply (``person.birthDate``)."""
    steps = tuple(path.split("."))
    if not all(step.isidentifier() for step in steps):
        raise ConnectorConfigError(setting, f"{path!r} is not a dotted path of element names")
    return steps


def follow_path(reply: Any, steps: tuple[str, ...]) -> Any:
    value = reply
    for step in steps:
        if value is None or isinstance(value, list | str | bytes):
            return None
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
    return value


def _children(xsd_type: Any) -> dict[str, Any]:
    return dict(getattr(xsd_type, "elements", None) or ())


def _element_at(xsd_type: Any, steps: tuple[str, ...], setting: str, where: str) -> Any:
    element = None
    for i, step in enumerate(steps):
        children = _children(xsd_type)
        element = children.get(step)
        if element is None:
            known = sorted(children) or "no child elements"
            raise ConnectorConfigError(setting, f"{'.'.join(steps[: i + 1])!r}: {where} has no such element "
                                                f"(it has {known})")
        if element.accepts_multiple and i < len(steps) - 1:
            raise ConnectorConfigError(setting, f"{'.'.join(steps[: i + 1])!r} repeats: read it with `each`")
        xsd_type = element.type
    return element


def _check_fields_in_wsdl(fields: tuple[Field, ...], xsd_type: Any, setting: str, where: str) -> None:
    for f in fields:
        field_setting = f"{setting}.{f.name}"
        at_setting = f"{field_setting}.each" if f.items is not None or f.item is not None else field_setting
        element = _element_at(xsd_type, f.at, at_setting, where)
        if f.item is not None:
            if not element.accepts_multiple:
                raise ConnectorConfigError(at_setting, f"{'.'.join(f.at)!r} is not a repeated element")
            if f.item.at:
                _check_fields_in_wsdl((f.item,), element.type, field_setting, f"{where}.{'.'.join(f.at)}")
            continue
        if f.items is not None:
            if not element.accepts_multiple:
                raise ConnectorConfigError(at_setting, f"{'.'.join(f.at)!r} is not a repeated element")
            _check_fields_in_wsdl(f.items, element.type, f"{field_setting}.fields", f"{where}.{'.'.join(f.at)}")
            continue
        if element.accepts_multiple:
            raise ConnectorConfigError(field_setting, f"{'.'.join(f.at)!r} repeats: read it with `each`")
        builtins = {cls.__name__ for cls in type(element.type).__mro__
                    if cls.__module__ == "zeep.xsd.types.builtins"}
        if not builtins & set(_XSD_TYPES[f.type]):
            raise ConnectorConfigError(field_setting, f"{'.'.join(f.at)!r} is not of a type that fits {f.type} "
                                                      f"(the WSDL says {element.type.name or 'a complex type'})")


def declared_operation(name: str, op_table: Any, root: Path, binding: Any) -> tuple[SoapOperation, Any]:
    """One ``[operations.<name>]`` table of a SOAP administration, checked against the WSDL; its record schema."""
    setting = f"operations.{name}"
    op = table_of(op_table, setting)
    refuse_unknown(op, _SOAP_KEYS, setting)
    kind = text_of(op, "record", setting)
    schema = record_schema(root, kind, op.get("record_schema"), setting)
    soap_name = text_of(op, "soap_operation", setting)
    try:
        soap_op = binding.get(soap_name)
    except ValueError:
        raise ConnectorConfigError(f"{setting}.soap_operation",
                                   f"the WSDL has no operation {soap_name!r}") from None
    params = parse_params(op, setting)
    args = table_of(op.get("args", {}), f"{setting}.args")
    check_template(args, params, f"{setting}.args")
    inputs = _children(soap_op.input.body.type)
    for arg in args:
        if arg not in inputs:
            raise ConnectorConfigError(f"{setting}.args.{arg}",
                                       f"{soap_name} takes no {arg!r} (it takes {sorted(inputs)})")
    output = soap_op.output.body.type
    status = table_of(op.get("status", {}), f"{setting}.status")
    refuse_unknown(status, ("at", "found", "not_found"), f"{setting}.status")
    status_at: tuple[str, ...] | None = None
    found_values: tuple[Any, ...] = ()
    not_found_values: tuple[Any, ...] = ()
    if status:
        status_at = split_path(text_of(status, "at", f"{setting}.status"), f"{setting}.status.at")
        _element_at(output, status_at, f"{setting}.status.at", f"{soap_name}'s reply")
        found_values, not_found_values = (tuple(v) if isinstance(v, list) else (v,)
                                          for v in (status.get("found", ()), status.get("not_found", ())))
        if not found_values:
            raise ConnectorConfigError(f"{setting}.status.found", "is required with a status")
    fields = parse_fields(op.get("fields", {}), f"{setting}.fields", split_path)
    if not fields:
        raise ConnectorConfigError(f"{setting}.fields", "an operation needs the fields of its record")
    check_fields_fit(fields, schema, f"{setting}.fields")
    _check_fields_in_wsdl(fields, output, f"{setting}.fields", f"{soap_name}'s reply")

    def build_args(given: Mapping[str, str]) -> dict[str, Any]:
        filled: dict[str, Any] = fill(args, given)
        return filled

    def to_record(reply: Any) -> dict[str, Any] | None:
        if status_at is not None:
            value = follow_path(reply, status_at)
            if value in not_found_values:
                return None
            if value not in found_values:
                raise MissingValue("unknown status")
        return read_fields(reply, fields, follow_path)

    return SoapOperation(soap_name, kind, build_args, to_record, params), schema.validator
