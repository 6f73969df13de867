"""Administrations that misbehave on purpose: what ``SimulatorControl.rogue`` makes a simulator answer.

Once a call's signature has checked out, a simulator whose ``rogue`` is set computes its real answer (found
or not found) and answers with the named misbehaviour instead; a call it refuses (bad signature, malformed
request) is still refused the normal way. Each mode is something broken or hostile backends do in the
wild. The gateway must turn every one into that source's status with a stable code: never a crash, never
a hang, never the backend's text in front of the client.

SOAP administrations (civil_registry, health)::

    dtd              the real envelope behind a DOCTYPE that names an external DTD
    xxe              an external entity on file:///etc/passwd, referenced from every field of the answer
    billion_laughs   nested entities that would expand to ~3 GB, referenced from the answer
    huge_text        a valid envelope with ``HUGE_BYTES`` of text in one field (with a Content-Length)
    soap_fault       HTTP 500 and a proper soap:Server fault that gives away a database error and a path
    wrong_namespace  a valid envelope whose answer element is in another namespace
    truncated        the real envelope cut in the middle (a complete HTTP message)
    html_200         HTTP 200 and an HTML error page
    endless          a chunked envelope whose text never ends (until the client hangs up)
    late             the real answer, after ``LATE_S``
    trickle          the real answer, headers at once, then the body a few bytes at a time over ``TRICKLE_S``
    gzip_bomb        ``Content-Encoding: gzip``: a few KiB that inflate to ``BOMB_BYTES``
    dropped          announces the real answer's length, sends half of it and closes the connection

REST administrations (education, employment, social_registry)::

    invalid_json     HTTP 200, application/json, but not JSON
    html_200         HTTP 200 and an HTML error page
    json_array       the real answer inside a JSON array (valid JSON, wrong shape)
    wrong_types      the real answer with every value of another type
    huge_json        the real answer plus ``HUGE_BYTES`` of padding (with a Content-Length)
    server_error     HTTP 500 and a JSON body that gives away a stack trace
    redirect         302 to a host outside the administration
    truncated        the real answer cut in the middle
    endless, late, trickle, gzip_bomb, dropped       as for SOAP

The streams (``endless``, ``trickle``) and ``late`` stop as soon as the client hangs up, and never run
past ``STREAM_MAX_BYTES`` or ``STREAM_MAX_S`` whatever the client does, so nothing can hang on them.
This module is part of the simulators, never of the gateway.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from lxml import etree

if TYPE_CHECKING:
    from simulators.common import SimulatorControl

SOAP_MODES = frozenset({
    "dtd", "xxe", "billion_laughs", "huge_text", "soap_fault", "wrong_namespace", "truncated", "html_200",
    "endless", "late", "trickle", "gzip_bomb", "dropped",
})
REST_MODES = frozenset({
    "invalid_json", "html_200", "json_array", "wrong_types", "huge_json", "server_error", "redirect",
    "truncated", "endless", "late", "trickle", "gzip_bomb", "dropped",
})
ROGUE_MODES = SOAP_MODES | REST_MODES

LATE_S = 3.0  # past the connectors' default timeout (2 s)
TRICKLE_S = 6.0
STREAM_MAX_BYTES = 64 * 1024 * 1024
STREAM_MAX_S = 30.0
HUGE_BYTES = 8 * 1024 * 1024
BOMB_BYTES = 16 * 1024 * 1024
REDIRECT_TO = "http://collector.invalid"  # .invalid never resolves: following it could not even connect
LEAK = "ORA-00942: table or view does not exist at /opt/app/backend/lib/dao/RecordDao.java:118"

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_OTHER_NAMESPACE = "urn:example:elsewhere:1"
_MARK = b"ROGUE-MARK-0b1c9e"
_FILLER = b"A" * 65_536
_POLL_S = 0.05
_TRICKLE_STEPS = 60

_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>"
    f"<h1>Internal Server Error</h1><pre>{LEAK}\n    at oracle.jdbc.driver.T4CTTIoer11.processError"
    "</pre></body></html>"
).encode()
XXE_DTD = b'<!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
EXTERNAL_DTD = b'<!DOCTYPE soap:Envelope SYSTEM "http://dtd.invalid/soap-envelope.dtd">'
LAUGHS_DTD = (
    b'<!DOCTYPE soap:Envelope [<!ENTITY lol0 "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10)))
               for i in range(1, 10))
    + b"]>"
)
_SOAP_FAULT = (
    f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
    f"<faultcode>soap:Server</faultcode><faultstring>{LEAK}</faultstring><detail><stackTrace>"
    f"java.sql.SQLSyntaxErrorException: {LEAK}\n    at oracle.jdbc.driver.T4CTTIoer11.processError"
    "</stackTrace></detail></soap:Fault></soap:Body></soap:Envelope>"
).encode()
_SOAP_HEAD = f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><x>'.encode()
_JSON_HEAD = b'{"padding": "'


# ---------------------------------------------------------------- the two entry points


async def soap_reply(request: web.Request, control: SimulatorControl, mode: str, real: bytes,
                     namespace: str) -> web.StreamResponse:
    """Misbehave instead of sending ``real``, the envelope of the answer in ``namespace``."""
    xml = "text/xml; charset=utf-8"
    if mode not in SOAP_MODES:
        return web.Response(status=500, text=f"rogue mode {mode!r} is not one of a SOAP administration")
    if mode == "dtd":
        return _response(with_doctype(real, EXTERNAL_DTD), xml)
    if mode == "xxe":
        return _response(with_doctype(_marked(real, namespace, every=True).replace(_MARK, b"&xxe;"),
                                       XXE_DTD), xml)
    if mode == "billion_laughs":
        return _response(with_doctype(_marked(real, namespace).replace(_MARK, b"&lol9;"), LAUGHS_DTD), xml)
    if mode == "huge_text":
        return _response(_marked(real, namespace).replace(_MARK, b"A" * HUGE_BYTES), xml)
    if mode == "soap_fault":
        return _response(_SOAP_FAULT, xml, status=500)
    if mode == "wrong_namespace":
        return _response(real.replace(namespace.encode(), _OTHER_NAMESPACE.encode()), xml)
    if mode == "endless":
        return await _endless(request, control, xml, _marked(real, namespace).partition(_MARK)[0])
    if mode == "gzip_bomb":
        return _response(_bomb(_SOAP_HEAD), xml, headers={"Content-Encoding": "gzip"})
    return await _common(request, control, mode, real, xml)


async def rest_reply(request: web.Request, control: SimulatorControl, mode: str,
                     real: web.Response) -> web.StreamResponse:
    """Misbehave instead of sending ``real``, the JSON answer (found or not found)."""
    json = "application/json"
    body = real.body if isinstance(real.body, bytes) else b"{}"
    if mode not in REST_MODES:
        return web.Response(status=500, text=f"rogue mode {mode!r} is not one of a REST administration")
    if mode == "invalid_json":
        return _response(body.replace(b'"', b"'").replace(b"}", b",}"), json)
    if mode == "json_array":
        return _response(b"[" + body + b"]", json)
    if mode == "wrong_types":
        return _response(orjson.dumps(_retyped(orjson.loads(body))), json)
    if mode == "huge_json":
        return _response(_JSON_HEAD + b"A" * HUGE_BYTES + b'", "answer": ' + body + b"}", json)
    if mode == "server_error":
        trace = {"error": "internal", "message": LEAK,
                 "trace": ["at oracle.jdbc.driver.T4CTTIoer11.processError(T4CTTIoer11.java:494)"]}
        return _response(orjson.dumps(trace), json, status=500)
    if mode == "redirect":
        return _response(b'{"moved": true}', json, status=302,
                         headers={"Location": REDIRECT_TO + request.path_qs})
    if mode == "endless":
        return await _endless(request, control, json, _JSON_HEAD)
    if mode == "gzip_bomb":
        return _response(_bomb(_JSON_HEAD), json, headers={"Content-Encoding": "gzip"})
    return await _common(request, control, mode, body, json)


async def _common(request: web.Request, control: SimulatorControl, mode: str, real: bytes,
                  content_type: str) -> web.StreamResponse:
    """The modes both kinds share."""
    if mode == "truncated":
        return _response(real[: len(real) // 2], content_type)
    if mode == "html_200":
        return _response(_HTML_PAGE, "text/html; charset=utf-8")
    if mode == "late":
        await _pause(request, LATE_S)
        return _response(real, content_type)
    if mode == "trickle":
        return await _trickle(request, control, content_type, real)
    if mode == "dropped":
        return await _dropped(request, content_type, real)
    raise AssertionError(f"unhandled rogue mode {mode!r}")


# ---------------------------------------------------------------- payloads


def _response(body: bytes, content_type: str, status: int = 200,
              headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": content_type, **(headers or {})})


def with_doctype(document: bytes, doctype: bytes) -> bytes:
    """``document`` with ``doctype`` right after its XML declaration (or first, if it has none)."""
    if document.startswith(b"<?xml"):
        declaration, _, rest = document.partition(b"?>")
        return declaration + b"?>\n" + doctype + b"\n" + rest.lstrip()
    return doctype + b"\n" + document


def _marked(real: bytes, namespace: str, every: bool = False) -> bytes:
    """``real`` with ``_MARK`` as the text of the answer's first field (``every``: of all its fields).

    The fields are the answer's leaf elements but ``status``, or ``status`` itself when it has no other.
    """
    root = etree.fromstring(real, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    leaves = [element for element in root.iter()
              if isinstance(element.tag, str) and len(element) == 0
              and etree.QName(element).namespace == namespace]
    fields = [element for element in leaves if etree.QName(element).localname != "status"] or leaves
    for element in fields if every else fields[:1]:
        element.text = _MARK.decode()
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def _retyped(value: Any) -> Any:
    """The same structure with every value of another JSON type."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return {"items": [_retyped(item) for item in value]}
    if isinstance(value, dict):
        return {key: _retyped(item) for key, item in value.items()}
    return 0


@functools.cache
def _bomb(head: bytes) -> bytes:
    """``head`` and ``BOMB_BYTES`` of filler, gzipped: a few KiB on the wire."""
    return gzip.compress(head + b"A" * BOMB_BYTES, compresslevel=9, mtime=0)


# ---------------------------------------------------------------- streams


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


async def _pause(request: web.Request, seconds: float) -> bool:
    """Wait ``seconds``, or less if the client hangs up first; True if it is still there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while _connected(request):
        left = deadline - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(_POLL_S, left))
    return False


async def _streaming(request: web.Request, control: SimulatorControl, resp: web.StreamResponse,
                     write: Callable[[web.StreamResponse], Awaitable[None]]) -> web.StreamResponse:
    """Prepare ``resp`` and run ``write`` on it, counted in ``control``, until done or the client hangs up.

    A client that neither reads nor hangs up cannot hold the stream open past ``STREAM_MAX_S`` either:
    the connection is then cut.
    """
    control.open_streams += 1
    try:
        async with asyncio.timeout(STREAM_MAX_S):
            await resp.prepare(request)
            await write(resp)
    except ConnectionError:  # the client hung up: what a well-behaved gateway does to these streams
        pass
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
    finally:
        control.open_streams -= 1
    return resp


async def _endless(request: web.Request, control: SimulatorControl, content_type: str,
                   head: bytes) -> web.StreamResponse:
    """``head``, then filler for ever: until the client hangs up, ``STREAM_MAX_BYTES`` or ``STREAM_MAX_S``."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    resp.enable_chunked_encoding()

    async def write(resp: web.StreamResponse) -> None:
        sent, chunk = 0, head
        while sent < STREAM_MAX_BYTES:
            await resp.write(chunk)
            sent += len(chunk)
            control.streamed_bytes += len(chunk)
            chunk = _FILLER
            await asyncio.sleep(0)

    return await _streaming(request, control, resp, write)


async def _trickle(request: web.Request, control: SimulatorControl, content_type: str,
                   body: bytes) -> web.StreamResponse:
    """``body``, announced at once (headers, length), then sent a few bytes at a time over ``TRICKLE_S``."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    resp.content_length = len(body)
    size = max(1, -(-len(body) // _TRICKLE_STEPS))

    async def write(resp: web.StreamResponse) -> None:
        for start in range(0, len(body), size):
            await resp.write(body[start:start + size])
            control.streamed_bytes += len(body[start:start + size])
            if not await _pause(request, TRICKLE_S / _TRICKLE_STEPS):
                return

    return await _streaming(request, control, resp, write)


async def _dropped(request: web.Request, content_type: str, body: bytes) -> web.StreamResponse:
    """Announce ``body``'s length, send half of it, close the connection."""
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    resp.content_length = len(body)
    try:
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
    except ConnectionError:
        return resp
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then hangs up
    return resp


__all__ = [
    "BOMB_BYTES",
    "EXTERNAL_DTD",
    "HUGE_BYTES",
    "LATE_S",
    "LAUGHS_DTD",
    "LEAK",
    "REDIRECT_TO",
    "REST_MODES",
    "ROGUE_MODES",
    "SOAP_MODES",
    "STREAM_MAX_BYTES",
    "STREAM_MAX_S",
    "TRICKLE_S",
    "XXE_DTD",
    "rest_reply",
    "soap_reply",
    "with_doctype",
]
