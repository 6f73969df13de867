"""Who may call which service, for which purpose, and which record properties they may not see.

Deny by default: a client calls a service only through a right ``{ service, purpose }`` of its own in
``config/clients.toml``. A right's ``deny`` withholds record properties (``employer_cnss``) or properties of a
list's items (``months.salary_mad``); what was withheld is said in the answer and the access log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.clients import ServiceRight
from gateway.config.settings import Settings
from gateway.errors import BadRequest, Forbidden, NotFound


@dataclass(frozen=True)
class ServiceDecision:
    service: str
    purpose: str
    deny: frozenset[str]
    reason: str


def service_rights(settings: Settings, client_id: str) -> dict[str, list[ServiceRight]]:
    """The client's service rights, by service (services it may not call are absent)."""
    rights: dict[str, list[ServiceRight]] = {}
    for right in settings.clients[client_id].services:
        if right.service in settings.services:
            rights.setdefault(right.service, []).append(right)
    return rights


def authorise_service(settings: Settings, client_id: str, service: str, purpose: str) -> ServiceDecision:
    """The right that allows this call, or a refusal. A service the client has no right to is 404, as if it did
    not exist: the catalogue a client sees is its own."""
    rights = service_rights(settings, client_id).get(service)
    if not rights:
        raise NotFound(f"no service {service!r} is available to client {client_id!r}", "service_not_found")
    if purpose not in settings.purposes:
        raise BadRequest(f"purpose {purpose!r} is not declared on this gateway", "unknown_purpose")
    for i, right in enumerate(settings.clients[client_id].services):
        if right.service == service and right.purpose == purpose:
            return ServiceDecision(service, purpose, right.deny,
                                   f"{client_id} services[{i}] grants {service} for {purpose}")
    allowed = sorted(r.purpose for r in rights)
    raise Forbidden(f"client {client_id!r} may call {service!r} only for {allowed}, not for {purpose!r}",
                    "forbidden_service")


def mask_record(data: Mapping[str, Any], deny: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """The record without the denied properties, and the rules that removed something."""
    out = dict(data)
    applied: list[str] = []
    for rule in sorted(deny):
        name, _, item_property = rule.partition(".")
        if name not in out:
            continue
        if not item_property:
            del out[name]
            applied.append(rule)
        elif isinstance(out[name], list):
            items = [dict(i) if isinstance(i, Mapping) else i for i in out[name]]
            if any(isinstance(i, dict) and item_property in i for i in items):
                applied.append(rule)
            out[name] = [{k: v for k, v in i.items() if k != item_property} if isinstance(i, dict) else i
                         for i in items]
    return out, applied
