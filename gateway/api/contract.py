"""The published contract: the JSON documents of ``schemas/`` with the check vocabulary filled in from the
check registry, so an installed third-party check appears in the enums the gateway validates requests
against and serves at ``GET /schemas/{name}``.

What derives from the registry: the ``checks`` enums of verification (and its ``maxItems``) and consent
requests, of a consent, of an access-log search and of a batch's ``check`` parameters (``openapi.json``);
the per-check result definitions of a verification response (its ``checks`` members; each check's maskable
fact names; for a check the files do not describe, a result built from its ``verdict_schema``, if it has
one). The files in ``schemas/`` are these documents for the built-in checks, and a test proves they are
equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from gateway.federation.checks.registry import CheckRegistry

SCHEMAS = Path(__file__).resolve().parent.parent.parent / "schemas"
PUBLISHED = frozenset(p.name for p in SCHEMAS.glob("*.json"))  # openapi.json and what it refers to
Document = dict[str, Any]


def _checks_list(node: Document, registry: CheckRegistry) -> None:
    items = node["items"]
    # a consent's list may also name services (``anyOf``: the checks first, then a service's pattern)
    (items["anyOf"][0] if "anyOf" in items else items)["enum"] = list(registry.names)


def _request(doc: Document, registry: CheckRegistry) -> None:
    _checks_list(doc["properties"]["checks"], registry)


def _verification_request(doc: Document, registry: CheckRegistry) -> None:
    _checks_list(doc["properties"]["checks"], registry)
    doc["properties"]["checks"]["maxItems"] = len(registry)  # each check once


def _search(doc: Document, registry: CheckRegistry) -> None:
    doc["properties"]["check"]["enum"] = list(registry.names)


def _response(doc: Document, registry: CheckRegistry) -> None:
    defs = doc["$defs"]
    doc["properties"]["checks"]["properties"] = {n: {"$ref": f"#/$defs/{n}_result"} for n in registry.names}
    for check in registry:
        facts = sorted(registry.facts[check.name])
        result = defs.get(f"{check.name}_result")
        if result is None:  # a check the files do not describe: its own verdict schema, or any object
            verdict = getattr(check, "verdict_schema", None) or {"type": "object"}
            result = defs[f"{check.name}_result"] = {"oneOf": [
                {"$ref": "#/$defs/unavailable"},
                {"$ref": "#/$defs/answered", "properties": {"verdict": dict(verdict), "facts": {}}},
            ]}
        answered = result["oneOf"][1]["properties"]
        answered["facts"] = {"items": {"properties": {"name": {"enum": facts}}}}


def _openapi(doc: Document, registry: CheckRegistry) -> None:
    for parameter in doc["paths"]["/v1/batches"]["post"]["parameters"]:
        if parameter["name"] == "check":
            parameter["schema"]["items"]["enum"] = list(registry.names)


FILL: Mapping[str, Callable[[Document, CheckRegistry], None]] = {
    "openapi.json": _openapi,
    "verification-request.json": _verification_request,
    "consent-request.json": _request,
    "consent.json": _request,
    "audit-search-request.json": _search,
    "verification-response.json": _response,
}


def _static(name: str) -> Document:
    if name not in PUBLISHED:
        raise KeyError(name)
    document: Document = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return document


@lru_cache(maxsize=64)
def document(name: str, registry: CheckRegistry) -> Mapping[str, Any]:
    """The document ``name`` of ``schemas/`` for the checks of ``registry`` (do not modify it)."""
    doc = _static(name)
    fill = FILL.get(name)
    if fill is not None:
        fill(doc, registry)
    return doc


@lru_cache(maxsize=64)
def body(name: str, registry: CheckRegistry) -> bytes:
    """``document`` as served."""
    return orjson.dumps(document(name, registry))
