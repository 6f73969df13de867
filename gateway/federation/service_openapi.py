"""One service described as an OpenAPI 3.1 document, generated from its configuration and record schema.

The document describes ``POST /v1/services/{service}`` for one caller: the purposes its rights allow (an enum),
the parameters (their patterns and descriptions; ``one_of`` as a ``oneOf`` of required sets), the answer with
the record's JSON Schema (2020-12, the dialect OpenAPI 3.1 uses) under ``components.schemas.Record``, the
detached-JWS signature header, the client-assertion security scheme, and every refusal as an RFC 9457 problem.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from gateway.config.purposes import Purpose
from gateway.crypto.jws import SIGNATURE_HEADER
from gateway.federation.services import PublishedService

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
REFUSALS = {
    "400": "The request does not follow the schema, or its parameters do not fit the service's (invalid_request, "
           "unknown_purpose)",
    "401": "No usable client assertion, or one already used (unauthenticated, invalid_assertion, assertion_replayed)",
    "403": "The caller may not call this service for this purpose, or the purpose needs a consent that is not in "
           "force (forbidden_service, forbidden_role, consent_missing, consent_revoked, consent_expired, "
           "consent_not_yet_valid, consent_out_of_scope)",
    "404": "No such service for this caller (service_not_found)",
    "408": "The request body did not arrive in time (request_timeout)",
    "413": "The body is too large (body_too_large)",
    "415": "The body is not application/json (unsupported_media_type)",
    "429": "Too many requests (rate_limited)",
    "431": "A request header is too large (headers_too_large)",
    "500": "The gateway could not process the request (internal_error)",
    "502": "The administration gave no usable answer (source_unavailable, source_rejected, source_fault, "
           "source_malformed, source_too_large)",
    "503": "Nothing is answered: the access log cannot record the call (audit_unavailable, access_log_corrupt), "
           "the administration's circuit breaker is open (source_circuit_open) or its calls in flight are at "
           "their bound (source_bulkhead_full), or replay protection cannot decide (not_ready, "
           "replay_history_lost)",
    "504": "The administration did not answer in time (source_timeout)",
}


@cache
def _schema_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


# on every answer, refusals included, as the gateway's own document says (schemas/openapi.json)
ANSWER_HEADERS = {
    SIGNATURE_HEADER: {"description": "A detached JWS (RFC 7515; EdDSA or ES256, the alg of the signing key) over "
                                      "the body, verifiable with the gateway's JWKS (/.well-known/jwks.json); its "
                                      "protected header binds the answer to the request (docs/security.md "
                                      "section 2)",
                       "schema": {"type": "string"}, "required": True},
    "X-Request-Id": {"description": "The request's id, as in the body's request_id and the access-log entry",
                     "schema": {"type": "string"}, "required": True},
    "Log-Checkpoint": {"description": "The access log's latest checkpoint: padded standard base64 of its C2SP "
                                      "signed note (docs/merkle-log.md section 14); absent only before the first",
                       "schema": {"type": "string", "pattern": "^[A-Za-z0-9+/]+={0,2}$"}, "required": False},
}


def embedded(schema: Mapping[str, Any], at: str) -> dict[str, Any]:
    """A standalone JSON Schema made a component at ``at`` (``#/components/schemas/Record``): its ``$schema`` and
    ``$id`` dropped, and its local references (``#/$defs/x``) rewritten to point inside the component."""
    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k not in ("$schema", "$id")}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                out["$ref"] = at + ref[1:]
            elif ref == "#":
                out["$ref"] = at
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node
    result: dict[str, Any] = rewrite(copy.deepcopy(dict(schema)))
    return result


def _params_schema(published: PublishedService) -> dict[str, Any]:
    params = published.info.params
    assert params is not None  # the catalogue publishes only operations that declare their parameters
    properties: dict[str, Any] = {}
    for p in params.params.values():
        prop: dict[str, Any] = {"type": "string"}
        if p.pattern is not None:
            prop["pattern"] = p.pattern.pattern
        description = p.description + (" — names a person: the access log keeps only its pseudonym"
                                        if p.identifier else "")
        if description:
            prop["description"] = description.lstrip(" —")
        properties[p.name] = prop
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties,
                              "required": [p.name for p in params.params.values() if p.required]}
    if params.one_of:
        schema["oneOf"] = [{"required": [name]} for name in params.one_of]
        schema["description"] = f"Exactly one of {', '.join(params.one_of)}"
    return schema


def openapi_document(published: PublishedService, purposes: Sequence[tuple[Purpose, frozenset[str]]],
                     version: str) -> dict[str, Any]:
    """The document for a caller whose rights allow ``purposes`` (each with the properties it withholds)."""
    service, info = published.service, published.info
    withheld = frozenset().union(*(deny for _, deny in purposes)) if purposes else frozenset()
    record = embedded(info.record_schema, "#/components/schemas/Record")
    if isinstance(record.get("required"), list):  # a property some right withholds may be absent
        record["required"] = [r for r in record["required"] if r not in withheld]
    response = embedded(_schema_file("service-call-response.json"), "#/components/schemas/ServiceCallResponse")
    response["properties"]["record"] = {"oneOf": [{"$ref": "#/components/schemas/Record"}, {"type": "null"}],
                                        "description": response["properties"]["record"]["description"]}
    response["properties"]["service"]["const"] = service.name
    response["properties"]["provider"]["const"] = service.provider
    request = embedded(_schema_file("service-call-request.json"), "#/components/schemas/ServiceCallRequest")
    request["properties"]["purpose"] = {"enum": [p.name for p, _ in purposes],
                                        "description": "A purpose the caller's rights allow for this service"}
    request["properties"]["params"] = _params_schema(published)
    problem = {"description": "", "headers": copy.deepcopy(ANSWER_HEADERS), "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}
    responses: dict[str, Any] = {"200": {
        "description": "The administration's answer as its canonical record (found: false and record: null when "
                       "it does not know the subject)",
        "headers": copy.deepcopy(ANSWER_HEADERS),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceCallResponse"}}}}}
    for status, text in REFUSALS.items():
        responses[status] = {**problem, "description": text}
    operation_id = "call_" + "".join(c if c.isalnum() else "_" for c in service.name)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": DIALECT,
        "info": {
            "title": service.title,
            "version": version,
            "description": (f"{service.description} " if service.description else "")
            + f"Answered by the administration {service.provider!r} (operation {service.operation!r}) through the "
              "ANSS gateway. Each purpose's legal basis is in x-purposes.",
            "x-purposes": [{"purpose": p.name, "title": p.title, "legal_basis": p.legal_basis,
                            **({"statute": p.statute} if p.statute else {}), "withheld": sorted(deny)}
                           for p, deny in purposes],
        },
        "paths": {f"/v1/services/{service.name}": {"post": {
            "operationId": operation_id,
            "summary": info.summary or service.title,
            "security": [{"clientAssertion": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ServiceCallRequest"}}}},
            "responses": responses,
        }}},
        "components": {
            "securitySchemes": {"clientAssertion": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A client assertion signed with the client's registered key (EdDSA or ES256), "
                               "bound to this method, path and body digest, used once (docs/security.md "
                               "section 1)"}},
            "schemas": {
                "ServiceCallRequest": request,
                "ServiceCallResponse": response,
                "Record": record,
                "Problem": embedded(_schema_file("problem.json"), "#/components/schemas/Problem"),
            },
        },
    }
