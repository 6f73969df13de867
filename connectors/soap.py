"""The generic SOAP connector kind (``kind = "soap"``): WSDL loading, envelopes, transport, error mapping.

An administration that speaks SOAP is configuration (``config/connectors/<name>.toml``): ``options.wsdl`` names
the local WSDL (absolute, or from the project root), ``options.path`` the endpoint path, and ``options.imports``
maps every remote ``xsd:import``/``xsd:include``/``wsdl:import`` location the WSDL names to a local copy
(``{ "https://example.org/types.xsd" = "schemas/wsdl/vendor/types.xsd" }``): nothing is ever fetched from the
network, and a remote location without a copy is a configuration error. Each ``[operations.<name>]`` table
gives its ``record`` (checked against ``schemas/records/<record>.json`` or ``record_schema``),
``soap_operation`` (the WSDL operation), ``params``, ``args`` (a table of templates for the operation's input
elements), ``status`` (``at``: a path to the reply's status, ``found`` and ``not_found``: its values; any
other value is off-contract) and ``fields`` (dotted paths into the parsed reply, see ``connectors.declared``).
Every path is checked against the WSDL's types at start-up: an element the types do not have, a repeated
element read as a single value, or a type that does not fit the field's is a configuration error. The escape
hatch: ``mapping = "module"`` names a Python module that defines ``OPERATIONS: dict[str, SoapOperation]``.

zeep is used only to build and parse envelopes. The WSDL is parsed once, at construction, from the local
file, through a transport that cannot reach the network (DTDs, entities and external references
forbidden) and that is sealed afterwards: parsing a reply can never make it read anything. Calls go
through the gateway's shared aiohttp session, signed for this path and audience, at most
``max_connections`` at a time per connector, redirects never followed; the answer is read up to
``max_response_bytes`` (counted on the decoded bytes as they stream in, so an endless or decompressing
body is cut off, and its connection closed, as soon as it crosses the cap), all of it inside the one
``timeout_s`` deadline (a body that trickles in slowly times out too). A reply that declares a DTD is
refused before any parser sees it; the rest is parsed once by ``binding.process_reply`` with DTDs,
entities and external references forbidden and lxml's huge-tree limits on.

    HTTP 200, status FOUND, record fits its schema             → Record
    HTTP 200, status NOT_FOUND                                 → SourceNotFound
    HTTP 401 / 403, or a soap:Client "Unauthorized" fault      → SourceRejected
    no complete answer within ``timeout_s``                    → SourceTimeout
    any other SOAP fault, HTTP 500 without one, other 5xx      → SourceFault
    a redirect; non-XML; a DTD or entity; unparseable XML; a reply element of another namespace or
    shape; a record that does not fit its schema               → SourceMalformed
    more than ``max_response_bytes`` (declared, streamed or decompressed)
                                                               → SourceTooLarge
    refused or broken connection, 502 / 503 / 504, other statuses
                                                               → SourceUnavailable

SOAP calls are not retried here. Exception details are our own short words: the backend's text (fault
strings included) never reaches them, nor do the messages of the parsers that read it. A query this
connector cannot express (unknown operation, missing parameter) is a caller bug and raises
``ValueError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import zeep
from lxml import etree
from multidict import CIMultiDictProxy
from zeep import exceptions as zeep_errors

from connectors.base import (
    CallContext,
    ConnectorConfig,
    ConnectorConfigError,
    ConnectorError,
    Query,
    Record,
    SourceFault,
    SourceMalformed,
    SourceNotFound,
    SourceRejected,
    SourceTimeout,
    SourceUnavailable,
)
from connectors.declared import (
    MissingValue,
    OperationInfo,
    load_operations,
    refuse_unknown,
    table_of,
)
from connectors.soap_operations import (
    SoapOperation,
    boolean,
    declared_operation,
    follow_path,
    found,
    iso_date,
    optional_iso_date,
    optional_text,
    split_path,
    text,
)
from connectors.transport import read_capped

_XML_MEDIA_TYPES = frozenset({"text/xml", "application/xml"})
_PARSED_STATUSES = frozenset({200, 500})  # SOAP 1.1 answers 200, or 500 with a fault
_AVAILABILITY_STATUSES = frozenset({502, 503, 504})  # "not now" from the server or a proxy, not a fault
# A DOCTYPE is how DTDs, entities (XXE, "billion laughs") and external references get into XML: a reply
# that declares one is refused on sight, in the encodings an XML reply may use, before any parsing.
# (zeep's own parse, with DTDs and entities forbidden, is the second lock behind this one.)
_DOCTYPE_MARKERS = tuple("<!DOCTYPE".encode(encoding)
                         for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"))


class OfflineTransport(zeep.Transport):
    """A zeep transport that reads local files and nothing else: no HTTP, no file:// via requests."""

    def __init__(self, copies: Mapping[str, Path] | None = None) -> None:
        super().__init__(cache=None)  # type: ignore[no-untyped-call]
        self.loads = 0
        self.sealed = False
        self.copies = dict(copies or {})
        self.refused: str | None = None

    def seal(self) -> None:
        """Refuse every load from now on (once the WSDL is in memory, nothing else may be read)."""
        self.sealed = True

    def load(self, url: str) -> bytes:
        if self.sealed:
            raise PermissionError("refusing to load anything: this transport is sealed")
        if url in self.copies:
            self.loads += 1
            return self.copies[url].read_bytes()
        parts = urlsplit(url)
        if parts.scheme not in ("", "file") or parts.netloc not in ("", "localhost"):
            self.refused = url
            raise PermissionError(f"refusing to load {url!r}: only local files")
        self.loads += 1
        return Path(parts.path if parts.scheme == "file" else url).read_bytes()

    def get(self, address: str, params: Any, headers: Any) -> Any:
        raise RuntimeError("this transport never sends")

    def post(self, address: str, message: Any, headers: Any) -> Any:
        raise RuntimeError("this transport never sends")


@dataclass(frozen=True, slots=True)
class _Reply:
    """What ``binding.process_reply`` reads from a response."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes
    encoding: str | None


def _zeep_settings() -> zeep.Settings:
    return zeep.Settings(
        strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )


def _is_auth_fault(fault: zeep_errors.Fault) -> bool:
    code = str(fault.code or "").rpartition(":")[2]
    return code == "Client" and str(fault.message or "").strip() == "Unauthorized"


def _local(root: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else root / path


# ---------------------------------------------------------------- the connector


class SoapConnector:
    """A SOAP administration; satisfies ``connectors.base.Connector``."""

    def __init__(self, config: ConnectorConfig, root: Path | str) -> None:
        self._config = config
        root = Path(root)
        options = config.options
        refuse_unknown(options, ("wsdl", "path", "imports"), "options")
        for option in ("wsdl", "path"):
            if not isinstance(options.get(option), str) or not options[option]:
                raise ConnectorConfigError(f"options.{option}", "must be a non-empty string")
        path: str = options["path"]
        if not path.startswith("/"):
            raise ConnectorConfigError("options.path", "must start with '/'")
        base = urlsplit(config.base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ConnectorConfigError("base_url", "must be an http(s) URL")
        self._path = base.path.rstrip("/") + path  # what the server sees, and what the signature covers
        self._url = f"{base.scheme}://{base.netloc}{self._path}"

        copies: dict[str, Path] = {}
        for url, local in table_of(options.get("imports", {}), "options.imports").items():
            if not isinstance(local, str) or not _local(root, local).is_file():
                raise ConnectorConfigError("options.imports", f"the local copy of {url} is missing: {local!r}")
            copies[url] = _local(root, local)
        wsdl = _local(root, options["wsdl"])
        if not wsdl.is_file():
            raise ConnectorConfigError("options.wsdl", f"WSDL {wsdl} not found")
        self._transport = OfflineTransport(copies)
        # While the WSDL loads, the offline transport is the guard (local files and listed copies only): zeep's
        # own forbid_external would refuse a remote import before the transport could map it to its copy.
        settings = _zeep_settings()
        settings.forbid_external = False
        try:
            self._client = zeep.Client(  # type: ignore[no-untyped-call]
                str(wsdl), transport=self._transport, settings=settings
            )
        except PermissionError:
            raise ConnectorConfigError("options.imports", f"the WSDL refers to {self._transport.refused}; list a "
                                                          "local copy of it in options.imports") from None
        except (OSError, zeep_errors.Error, etree.XMLSyntaxError, ValueError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConnectorConfigError("options.wsdl", f"cannot load WSDL {wsdl}: {detail}") from None
        self._transport.seal()
        settings.forbid_external = True  # from now on nothing external, whatever a reply says
        self._binding = self._client.service._binding

        self._operations, self._validators, self._summaries = load_operations(
            config, root, SoapOperation, lambda name, table: declared_operation(name, table, root, self._binding))
        self._soap_ops: dict[str, Any] = {}
        for name, op in self._operations.items():
            try:
                self._soap_ops[op.soap_operation] = self._binding.get(op.soap_operation)
            except ValueError:
                raise ConnectorConfigError(f"operations.{name}",
                                           f"names {op.soap_operation!r}, which {wsdl} does not define") from None

        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s, connect=config.connect_timeout_s)
        self._slots = asyncio.Semaphore(config.max_connections)

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self._operations)

    def describe(self, operation: str) -> OperationInfo:
        """What ``operation`` takes and yields (``KeyError`` when this administration has no such operation)."""
        op = self._operations[operation]
        return OperationInfo(operation, op.record_kind, self._validators[operation].schema, op.params,
                             self._summaries.get(operation, ""))

    @property
    def wsdl_loads(self) -> int:
        """How many documents zeep has read (the WSDL, once, at construction)."""
        return self._transport.loads

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the gateway, the WSDL is in memory."""

    async def fetch(self, query: Query, ctx: CallContext) -> Record:
        op = self._operations.get(query.operation)
        if op is None:
            raise ValueError(f"connector {self.name!r} has no operation {query.operation!r}")
        soap_op = self._soap_ops[op.soap_operation]
        try:
            if op.params is not None:
                op.params.check(query.params)
            args = op.build_args(query.params)
            envelope = self._client.create_message(  # type: ignore[no-untyped-call]
                self._client.service, op.soap_operation, **args
            )
        except (KeyError, TypeError, ValueError, zeep_errors.Error) as exc:
            raise ValueError(
                f"connector {self.name!r}, operation {query.operation!r}: cannot build the request ({exc})"
            ) from None
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        try:
            async with asyncio.timeout(self._config.timeout_s):
                reply = await self._call(body, soap_op.soapaction or "", ctx)
        except ConnectorError:
            raise
        except TimeoutError:
            raise SourceTimeout(self.name, "no answer in time") from None
        return Record(self.name, op.record_kind, self._to_record(query.operation, op, soap_op, reply),
                      datetime.now(UTC))

    async def _call(self, body: bytes, action: str, ctx: CallContext) -> _Reply:
        """Send one envelope; read the answer (capped). Maps transport failures and HTTP statuses."""
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{action}"',
            "Authorization": ctx.sign("POST", self._path, body, self._config.audience),
        }
        try:
            async with self._slots, ctx.session.post(
                self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                if status in (401, 403):
                    raise SourceRejected(self.name, f"call refused (HTTP {status})")
                if 300 <= status < 400:
                    raise SourceMalformed(self.name, f"redirect not followed (HTTP {status})")
                if status in _AVAILABILITY_STATUSES:
                    raise SourceUnavailable(self.name, f"HTTP {status}")
                if status not in _PARSED_STATUSES:
                    if status >= 500:
                        raise SourceFault(self.name, f"server error (HTTP {status})")
                    raise SourceUnavailable(self.name, f"unexpected HTTP {status}")
                if resp.content_type not in _XML_MEDIA_TYPES:
                    if status >= 500:
                        raise SourceFault(self.name, f"server error (HTTP {status})")
                    raise SourceMalformed(self.name, "answer is not XML")
                content = await self._read_capped(resp)
                return _Reply(status, resp.headers, content, resp.charset)
        except ConnectorError:
            raise
        except TimeoutError:  # also aiohttp.ServerTimeoutError and its subclasses
            raise SourceTimeout(self.name, "no answer in time") from None
        except aiohttp.ClientConnectionError:
            raise SourceUnavailable(self.name, "connection failed") from None
        except (aiohttp.ClientError, ValueError):  # a payload cut short, a broken chunk or encoding
            raise SourceUnavailable(self.name, "broken answer") from None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        return await read_capped(resp, self._config.max_response_bytes, self.name)

    def _to_record(self, operation: str, op: SoapOperation, soap_op: Any, reply: _Reply) -> dict[str, Any]:
        """Refuse a DTD on sight, parse the reply once, map faults, then map and check the record."""
        if any(marker in reply.content for marker in _DOCTYPE_MARKERS):
            raise SourceMalformed(self.name, "answer declares a DTD")
        try:
            result = self._binding.process_reply(self._client, soap_op, reply)
        except zeep_errors.Fault as fault:
            if _is_auth_fault(fault):
                raise SourceRejected(self.name, "call refused (SOAP fault)") from None
            raise SourceFault(self.name, "SOAP fault") from None
        except Exception:  # malformed XML, DTD/entities, off-contract elements, anything zeep trips on
            if reply.status_code >= 500:  # an error page the parser could not read is still an error
                raise SourceFault(self.name, f"server error (HTTP {reply.status_code})") from None
            raise SourceMalformed(self.name, "malformed answer") from None
        try:
            data = op.to_record(result)
        except (AttributeError, KeyError, TypeError, ValueError, MissingValue):
            raise SourceMalformed(self.name, "answer lacks expected fields") from None
        if data is None:
            raise SourceNotFound(self.name, "subject unknown")
        if not self._validators[operation].is_valid(data):
            raise SourceMalformed(self.name, f"answer does not fit the {op.record_kind} record")
        return data


__all__ = [
    "OfflineTransport",
    "SoapConnector",
    "SoapOperation",
    "boolean",
    "declared_operation",
    "follow_path",
    "found",
    "iso_date",
    "optional_iso_date",
    "optional_text",
    "split_path",
    "text",
]
