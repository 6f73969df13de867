"""Who may see what, and why: access rights per client × purpose × check. Deny by default."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import BadRequest, Forbidden
from gateway.settings import Settings


def authorise(settings: Settings, client_id: str, purpose: str, requested: Sequence[str] | None) -> tuple[str, ...]:
    """The checks to run, or a refusal.

    Without ``requested`` the client gets every check the purpose allows *and* it has a right to.
    """
    declared = settings.purposes.get(purpose)
    if declared is None:
        raise BadRequest(f"purpose {purpose!r} is not declared on this gateway", "unknown_purpose")
    client = settings.clients[client_id]
    granted: set[str] = set()
    for right in client.rights:
        if right.purpose == purpose:
            granted |= right.checks
    if not granted:
        raise Forbidden(f"client {client_id!r} may not query for purpose {purpose!r}", "forbidden_purpose")
    if requested is None:
        return tuple(c for c in declared.checks if c in granted)
    denied = [c for c in requested if c not in granted]
    if denied:
        raise Forbidden(f"client {client_id!r} may not run {denied} for purpose {purpose!r}", "forbidden_check")
    return tuple(dict.fromkeys(requested))
