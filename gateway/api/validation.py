"""Parses request bodies strictly: JSON only, no duplicate keys, bounded depth, then the JSON Schema (as
published, with the check vocabulary of the running gateway's registry: ``gateway/api/contract.py``). A body
the schema plainly accepts is let through by the schema's compiled predicate (``gateway.api.fast_schema``);
any other is validated in full, which names the error."""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator, ValidationError, validators

from gateway.api.contract import SCHEMAS, document
from gateway.api.fast_schema import Predicate, accepting
from gateway.errors import BadRequest, UnsupportedMediaType
from gateway.federation.checks.registry import CheckRegistry

__all__ = ["MAX_DEPTH", "SCHEMAS", "parse_json", "validator"]

MAX_DEPTH = 8


@cache
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    r"""JSON Schema patterns are ECMA-262: ``$`` means end of input. Python's ``$`` also matches before a
    final newline, which would let ``"1234567890\n"`` pass as an IDCS — so anchor with ``\Z``."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _strict_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if isinstance(instance, str) and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


StrictValidator = validators.extend(Draft202012Validator, {"pattern": _strict_pattern})  # type: ignore[no-untyped-call]


@lru_cache(maxsize=64)
def validator(name: str, checks: CheckRegistry) -> Any:
    schema = document(name, checks)
    Draft202012Validator.check_schema(schema)
    return StrictValidator(schema)


@lru_cache(maxsize=64)
def _plainly_valid(name: str, checks: CheckRegistry) -> Predicate | None:
    return accepting(validator(name, checks).schema, _ecma_pattern)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()], default=level + 1)
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value], default=level + 1)
    return level


def refuse_unknown_query(request: web.Request, allowed: frozenset[str] = frozenset(),
                         repeatable: frozenset[str] = frozenset()) -> None:
    """400 for a query parameter the resource does not take, or one given twice (a second value would be silently
    ignored) unless it is ``repeatable``."""
    query = request.query
    unknown = sorted(set(query) - allowed)
    if unknown or any(len(query.getall(k)) > 1 for k in query if k not in repeatable):
        raise BadRequest(f"unknown or repeated query parameter(s); this resource takes {sorted(allowed) or 'none'}"
                         + (f" ({', '.join(sorted(repeatable))} may repeat)" if repeatable else ""))


def _not_json(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity``: Python's reader takes them, RFC 8259 section 6 does not."""
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes, content_type: str, schema: str, checks: CheckRegistry) -> dict[str, Any]:
    if content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        text = body.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_not_json)
        # An escaped lone surrogate ("\\ud800") is valid JSON but no text: refuse it here, not in a store.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except BadRequest:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest("the body is not valid UTF-8 JSON") from exc
    if _depth(data) > MAX_DEPTH:
        raise BadRequest("the body is nested too deeply")
    plainly_valid = _plainly_valid(schema, checks)
    if plainly_valid is not None and plainly_valid(data):
        errors = []
    else:
        errors = sorted(validator(schema, checks).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/" + "/".join(str(p) for p in first.absolute_path)
        raise BadRequest(f"{where}: {_describe(first.validator, first.validator_value)}")
    assert isinstance(data, dict)
    return data


def _describe(keyword: Any, value: Any) -> str:
    """Our own words for a schema violation (never echo the offending input back)."""
    messages = {
        "required": f"missing required member(s) {value}",
        "additionalProperties": "unknown member",
        "type": f"must be of type {value}",
        "pattern": "has an invalid format",
        "enum": f"must be one of {value}",
        "minProperties": "must name exactly one identifier",
        "maxProperties": "must name exactly one identifier",
        "uniqueItems": "must not repeat items",
        "minItems": "must not be empty",
        "maxItems": "has too many items",
    }
    return messages.get(str(keyword), f"violates `{keyword}`")
