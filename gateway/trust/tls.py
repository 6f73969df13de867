"""Mutual TLS: the server context, the client identity in a verified certificate, and its binding to the JWT.

A client certificate names its client by a SAN URI ``urn:anss:client:<client-id>`` (preferred) or, failing
that, by its subject CN. When the gateway requires client certificates, the certificate and the client
assertion must name the same client: a token issued by client A presented on a connection authenticated as
client B is refused (401 ``invalid_assertion``), so a stolen token is useless without the key of the TLS
certificate it was issued alongside.

Only the CA named by ``client_ca_file`` is trusted for client certificates, never the system store.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.errors import Unauthenticated

CLIENT_URI_PREFIX = "urn:anss:client:"
MISMATCH_DETAIL = "the token's client does not match the TLS client certificate"
MISSING_DETAIL = "a verified TLS client certificate is required"


def server_ssl_context(cert_file: Path | str, key_file: Path | str, client_ca_file: Path | str | None,
                       require_client_cert: bool = True) -> ssl.SSLContext:
    """A TLS ≥ 1.2 server context; with ``client_ca_file``, client certificates are verified against it.

    ``require_client_cert`` (the default) refuses the handshake of a client without a valid certificate
    (``CERT_REQUIRED``); otherwise a certificate is asked for but optional (``CERT_OPTIONAL``).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no system CAs: only the configured client CA
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(str(cert_file), str(key_file))
    if client_ca_file is not None:
        context.load_verify_locations(cafile=str(client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("client certificates can only be required with a client CA file")
    return context


def client_ssl_context(ca_file: Path | str | None = None, cert_file: Path | str | None = None,
                       key_file: Path | str | None = None) -> ssl.SSLContext:
    """A TLS ≥ 1.2 client context trusting ``ca_file`` (else the system store), presenting a certificate."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
    return context


def client_id_from_cert(cert: dict[str, Any] | None) -> str | None:
    """The client named by a certificate as ``ssl.SSLSocket.getpeercert()`` returns it.

    The SAN URI ``urn:anss:client:<id>`` wins; several different such URIs name no one (``None``);
    without one, the subject's common name (if it has exactly one).
    """
    if not cert:
        return None
    uris = {value[len(CLIENT_URI_PREFIX):] for kind, value in cert.get("subjectAltName", ())
            if kind == "URI" and value.startswith(CLIENT_URI_PREFIX) and len(value) > len(CLIENT_URI_PREFIX)}
    if uris:
        return uris.pop() if len(uris) == 1 else None
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return names[0] if len(names) == 1 and names[0] else None


def _ssl_object(request: web.Request) -> ssl.SSLObject | ssl.SSLSocket | None:
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket) else None


def client_id_from_peer(request: web.Request) -> str | None:
    """The client named by the connection's *verified* client certificate, or ``None``."""
    ssl_object = _ssl_object(request)
    if ssl_object is None or ssl_object.context.verify_mode == ssl.CERT_NONE:
        return None  # no TLS, or TLS without client verification: a certificate proves nothing
    return client_id_from_cert(ssl_object.getpeercert())


def mtls_enabled(request: web.Request) -> bool:
    """Whether this connection was accepted by a server that verifies client certificates."""
    ssl_object = _ssl_object(request)
    return ssl_object is not None and ssl_object.context.verify_mode != ssl.CERT_NONE


def check_binding(request: web.Request, client_id: str) -> None:
    """Refuse the request if mutual TLS is on and the certificate does not name ``client_id``.

    Without mutual TLS (plain HTTP, or TLS without client certificates) there is nothing to bind: no-op.
    """
    if not mtls_enabled(request):
        return
    peer = client_id_from_peer(request)
    if peer is None:
        raise Unauthenticated(MISSING_DETAIL, "invalid_assertion")
    if peer != client_id:
        raise Unauthenticated(MISMATCH_DETAIL, "invalid_assertion")


__all__ = [
    "CLIENT_URI_PREFIX",
    "check_binding",
    "client_id_from_cert",
    "client_id_from_peer",
    "client_ssl_context",
    "mtls_enabled",
    "server_ssl_context",
]
