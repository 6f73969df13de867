"""The generic SOAP connector kind (``kind = "soap"``): WSDL loading, envelopes, transport, error mapping.

An administration that speaks SOAP is configuration (``config/connectors/<name>.toml``: ``options.wsdl``
names the local WSDL under the project root, ``options.path`` the endpoint path) plus a mapping module,
named by ``config.mapping``, that defines ``OPERATIONS: dict[str, SoapOperation]``: for each gateway
operation, the WSDL operation to call, how to build its arguments from the query parameters and how to
turn the deserialised reply into canonical record data. Every record is checked against
``schemas/records/<kind>.json`` before it leaves.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import import_module
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
from connectors.transport import read_capped, record_validators

_XML_MEDIA_TYPES = frozenset({"text/xml", "application/xml"})
_PARSED_STATUSES = frozenset({200, 500})  # SOAP 1.1 answers 200, or 500 with a fault
_AVAILABILITY_STATUSES = frozenset({502, 503, 504})  # "not now" from the server or a proxy, not a fault
# A DOCTYPE is how DTDs, entities (XXE, "billion laughs") and external references get into XML: a reply
# that declares one is refused on sight, in the encodings an XML reply may use, before any parsing.
# (zeep's own parse, with DTDs and entities forbidden, is the second lock behind this one.)
_DOCTYPE_MARKERS = tuple("<!DOCTYPE".encode(encoding)
                         for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"))


@dataclass(frozen=True, slots=True)
class SoapOperation:
    """One gateway operation answered by a SOAP administration.

    ``soap_operation`` is the WSDL operation name; ``build_args`` turns the query parameters into its
    keyword arguments; ``to_record`` turns zeep's deserialised reply into the ``record_kind`` record's
    data, or returns None when the administration says it does not know the subject.
    """

    soap_operation: str
    record_kind: str
    build_args: Callable[[Mapping[str, str]], dict[str, Any]]
    to_record: Callable[[Any], dict[str, Any] | None]


class OfflineTransport(zeep.Transport):
    """A zeep transport that reads local files and nothing else: no HTTP, no file:// via requests."""

    def __init__(self) -> None:
        super().__init__(cache=None)  # type: ignore[no-untyped-call]
        self.loads = 0
        self.sealed = False

    def seal(self) -> None:
        """Refuse every load from now on (once the WSDL is in memory, nothing else may be read)."""
        self.sealed = True

    def load(self, url: str) -> bytes:
        if self.sealed:
            raise PermissionError("refusing to load anything: this transport is sealed")
        parts = urlsplit(url)
        if parts.scheme not in ("", "file") or parts.netloc not in ("", "localhost"):
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


# ---------------------------------------------------------------- helpers for mapping modules
# zeep gives back what the reply holds; these insist on the type the contract promises (else ValueError,
# which the connector reports as an unavailable source).


def text(value: Any) -> str:
    """A required, non-empty text value from a reply."""
    if not isinstance(value, str) or not value:
        raise ValueError("missing text value")
    return value


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def iso_date(value: Any) -> str:
    if not isinstance(value, date):
        raise ValueError("missing date value")
    return value.isoformat()


def optional_iso_date(value: Any) -> str | None:
    return None if value is None else iso_date(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("missing boolean value")
    return value


def found(reply: Any) -> bool:
    """True for FOUND, False for NOT_FOUND; anything else is off-contract."""
    if reply.status == "FOUND":
        return True
    if reply.status == "NOT_FOUND":
        return False
    raise ValueError("unknown status")


# ---------------------------------------------------------------- the connector


class SoapConnector:
    """A SOAP administration; satisfies ``connectors.base.Connector``."""

    def __init__(self, config: ConnectorConfig, root: Path | str) -> None:
        self._config = config
        root = Path(root)
        where = f"connector {config.name!r}"
        for option in ("wsdl", "path"):
            if not isinstance(config.options.get(option), str):
                raise ValueError(f"{where}: options.{option} must be a string")
        path: str = config.options["path"]
        if not path.startswith("/"):
            raise ValueError(f"{where}: options.path must start with '/'")
        base = urlsplit(config.base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ValueError(f"{where}: base_url must be an http(s) URL")
        self._path = base.path.rstrip("/") + path  # what the server sees, and what the signature covers
        self._url = f"{base.scheme}://{base.netloc}{self._path}"

        mapping = import_module(config.mapping)
        operations = getattr(mapping, "OPERATIONS", None)
        if not isinstance(operations, dict) or not all(
            isinstance(op, SoapOperation) for op in operations.values()
        ):
            raise ValueError(
                f"{where}: mapping {config.mapping!r} must define OPERATIONS: dict[str, SoapOperation]"
            )
        self._operations: dict[str, SoapOperation] = dict(operations)

        wsdl = root / config.options["wsdl"]
        self._transport = OfflineTransport()
        try:
            self._client = zeep.Client(  # type: ignore[no-untyped-call]
                str(wsdl), transport=self._transport, settings=_zeep_settings()
            )
        except (OSError, zeep_errors.Error, etree.XMLSyntaxError) as exc:
            raise ValueError(f"{where}: cannot load WSDL {wsdl}: {exc}") from exc
        self._transport.seal()
        self._binding = self._client.service._binding
        self._soap_ops: dict[str, Any] = {}
        for name, op in self._operations.items():
            try:
                self._soap_ops[op.soap_operation] = self._binding.get(op.soap_operation)
            except ValueError:
                raise ValueError(f"{where}: operation {name!r} names {op.soap_operation!r}, "
                                 f"which {wsdl} does not define") from None

        self._validators = record_validators(root, (op.record_kind for op in self._operations.values()),
                                             where)

        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s, connect=config.connect_timeout_s)
        self._slots = asyncio.Semaphore(config.max_connections)

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self._operations)

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
        return Record(self.name, op.record_kind, self._to_record(op, soap_op, reply), datetime.now(UTC))

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

    def _to_record(self, op: SoapOperation, soap_op: Any, reply: _Reply) -> dict[str, Any]:
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
        except (AttributeError, KeyError, TypeError, ValueError):
            raise SourceMalformed(self.name, "answer lacks expected fields") from None
        if data is None:
            raise SourceNotFound(self.name, "subject unknown")
        if not self._validators[op.record_kind].is_valid(data):
            raise SourceMalformed(self.name, f"answer does not fit the {op.record_kind} record")
        return data


__all__ = [
    "OfflineTransport",
    "SoapConnector",
    "SoapOperation",
    "boolean",
    "found",
    "iso_date",
    "optional_iso_date",
    "optional_text",
    "text",
]
