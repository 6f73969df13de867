"""A fast yes for request bodies the JSON Schema plainly accepts; the full validator decides everything else.

``jsonschema`` takes tens of microseconds for even the smallest body, and every verification pays it. Most
bodies are valid, and the schemas of the hot resources use a handful of keywords. ``accepting(schema)``
compiles such a schema, once, into a predicate that is true only for an instance the schema accepts. False
means "not sure": the caller runs the full validator, which finds the error (or accepts after all). So the
predicate may be cautious, but never generous. A schema with any keyword outside the plain subset gets no
predicate (``None``) and is always validated in full.

The subset, with JSON Schema 2020-12's meaning as ``jsonschema`` applies it: ``type``, ``properties``,
``required``, ``additionalProperties`` (a boolean or a schema), ``propertyNames``, ``minProperties``,
``maxProperties``, ``items`` (one schema for every item), ``minItems``, ``maxItems``, ``uniqueItems`` (a
fast yes only for text items), ``enum`` (a fast yes only for text), ``pattern`` (ECMA-262 anchoring, as the
full validator does it), ``minLength``, ``maxLength``, ``minimum``, ``maximum``; and the annotations, which
assert nothing (``format`` included: the validator checks no format).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["accepting"]

Predicate = Callable[[Any], bool]

ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "format", "default", "examples",
                         "deprecated", "readOnly", "writeOnly"})


class _Unsupported(Exception):
    pass


def accepting(schema: Any, pattern: Callable[[str], re.Pattern[str]]) -> Predicate | None:
    """The predicate for ``schema`` (see the module docstring), or ``None`` when it uses a keyword outside the
    subset. ``pattern`` compiles a schema's pattern as the full validator does."""
    try:
        return _compile(schema, pattern)
    except _Unsupported:
        return None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_TYPES: Mapping[str, Predicate] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "number": _is_number,
    "integer": lambda x: (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer()),
}


def _compile(schema: Any, pattern: Callable[[str], re.Pattern[str]]) -> Predicate:
    if schema is True:
        return lambda _: True
    if not isinstance(schema, dict):  # (false rejects everything: nothing to say yes to quickly)
        raise _Unsupported
    unknown = set(schema) - ANNOTATIONS - _KEYWORDS
    if unknown:
        raise _Unsupported
    checks: list[Predicate] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not all(isinstance(n, str) and n in _TYPES for n in names):
            raise _Unsupported
        kinds = [_TYPES[n] for n in names]
        checks.append(lambda x: any(kind(x) for kind in kinds))
    checks += _object_checks(schema, pattern)
    checks += _array_checks(schema, pattern)
    checks += _scalar_checks(schema, pattern)
    return lambda x: all(check(x) for check in checks)


def _object_checks(schema: dict[str, Any], pattern: Callable[[str], re.Pattern[str]]) -> list[Predicate]:
    checks: list[Predicate] = []
    properties = {name: _compile(sub, pattern) for name, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    extra_check = None if extra is True else (lambda _: False) if extra is False else _compile(extra, pattern)
    names = _compile(schema["propertyNames"], pattern) if "propertyNames" in schema else None
    required = tuple(schema.get("required", ()))
    low, high = schema.get("minProperties"), schema.get("maxProperties")

    def members(x: Any) -> bool:
        if not isinstance(x, dict):
            return True
        if any(name not in x for name in required):
            return False
        if (low is not None and len(x) < low) or (high is not None and len(x) > high):
            return False
        for key, value in x.items():
            if names is not None and not names(key):
                return False
            check = properties.get(key)
            if check is not None:
                if not check(value):
                    return False
            elif extra_check is not None and not extra_check(value):
                return False
        return True

    if properties or extra_check or names or required or low is not None or high is not None:
        checks.append(members)
    return checks


def _array_checks(schema: dict[str, Any], pattern: Callable[[str], re.Pattern[str]]) -> list[Predicate]:
    if not any(k in schema for k in ("items", "minItems", "maxItems", "uniqueItems")):
        return []
    each = _compile(schema["items"], pattern) if "items" in schema else None
    low, high, unique = schema.get("minItems"), schema.get("maxItems"), schema.get("uniqueItems", False)

    def items(x: Any) -> bool:
        if not isinstance(x, list):
            return True
        if (low is not None and len(x) < low) or (high is not None and len(x) > high):
            return False
        if unique and not (all(isinstance(i, str) for i in x) and len(set(x)) == len(x)):
            return False  # text items only: equality of other JSON values is the full validator's to decide
        return each is None or all(each(i) for i in x)

    return [items]


def _scalar_checks(schema: dict[str, Any], pattern: Callable[[str], re.Pattern[str]]) -> list[Predicate]:
    checks: list[Predicate] = []
    if "enum" in schema:
        texts = frozenset(v for v in schema["enum"] if isinstance(v, str))
        checks.append(lambda x: isinstance(x, str) and x in texts)  # anything else: the full validator
    if "pattern" in schema:
        compiled = pattern(schema["pattern"])
        checks.append(lambda x: not isinstance(x, str) or compiled.search(x) is not None)
    low_len, high_len = schema.get("minLength"), schema.get("maxLength")
    if low_len is not None or high_len is not None:
        checks.append(lambda x: not isinstance(x, str) or ((low_len is None or len(x) >= low_len)
                                                          and (high_len is None or len(x) <= high_len)))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        if not all(v is None or _is_number(v) for v in (low, high)):
            raise _Unsupported
        checks.append(lambda x: not _is_number(x) or ((low is None or x >= low) and (high is None or x <= high)))
    return checks


_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "propertyNames", "minProperties",
                       "maxProperties", "items", "minItems", "maxItems", "uniqueItems", "enum", "pattern",
                       "minLength", "maxLength", "minimum", "maximum"})
