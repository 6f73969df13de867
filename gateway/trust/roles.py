"""Client roles: who may query citizen data and who may read the access log, checked in one place.

Every registered client has a ``role`` (``config/clients.toml``, default ``"data"``):

* ``data`` — an administration or agency: queries citizen data (``/v1/verifications``) and manages consents
  (``/v1/consents``) within its rights; it never reads the access log.
* ``officer`` — a security officer (e.g. DGSSI): reads the access log (``/v1/audit/...``, the console) and
  holds no data rights (a configuration that gives an officer rights is refused at start).

Officers authenticate like data clients (their own keys, the same signed client assertion). Whoever
authenticates a request records the client with ``authenticated_as``; a handler then calls
``require_role(request, "officer")`` (or ``"data"``), which refuses any other role with 403 ``forbidden_role``
— a refusal the pipeline logs like every other. ``check_role`` does the same for a client id alone (e.g. at a
console login).
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from gateway.config.settings import ClientSettings, Settings
from gateway.errors import Forbidden, InternalError
from gateway.web.state import SETTINGS

Role = Literal["data", "officer"]
DATA: Role = "data"
OFFICER: Role = "officer"
AUTHENTICATED_CLIENT: web.RequestKey[str] = web.RequestKey("authenticated_client", str)

REFUSALS: dict[str, str] = {
    DATA: "security officers read the access log; they cannot query citizen data or manage consents",
    OFFICER: "only security officers may read the access log",
}


def check_role(settings: Settings, client_id: str, role: Role) -> ClientSettings:
    """The client's settings if it has ``role``; else 403 ``forbidden_role``."""
    client = settings.clients.get(client_id)
    if client is None or client.role != role:
        raise Forbidden(REFUSALS[role], "forbidden_role")
    return client


def authenticated_as(request: web.Request, client_id: str) -> None:
    """Record who this request authenticated as (after the client assertion, or a console session)."""
    request[AUTHENTICATED_CLIENT] = client_id


def require_role(request: web.Request, role: Role) -> ClientSettings:
    """The authenticated client of ``request`` if it has ``role``; else 403 ``forbidden_role``."""
    client_id = request.get(AUTHENTICATED_CLIENT)
    if client_id is None:  # a handler asked before authenticating: a bug, never an open door
        raise InternalError("the role of an unauthenticated request was asked for")
    return check_role(request.app[SETTINGS], client_id, role)
