"""The connector seam: the ``Connector`` protocol and the values that cross it.

A connector answers one *operation* of one administration (``person``, ``family``, ``enrolment``,
``coverage``, ``declarations``) for one query and returns a canonical ``Record``. It never talks to the
network on its own: it sends through ``CallContext.session`` (the gateway's single shared aiohttp
session) and signs every call with ``CallContext.sign``.

Exceptions (all carry a stable ``code`` that ends up in the per-source status, never the backend text)::

    ConnectorError
     ├── SourceNotFound       the administration does not know the subject (a normal answer)
     ├── SourceTimeout        no complete answer within the connector's timeout (also a TimeoutError)
     ├── SourceRejected       the administration refused our call (401/403, SOAP auth fault)
     └── SourceUnavailable    no usable answer: refused or broken connection, 502/503/504, other statuses
          ├── SourceFault     the administration reported its own failure (a SOAP fault, HTTP 500 and
          │                   the 5xx statuses that are not about availability)
          ├── SourceMalformed an answer off the contract: unparseable, hostile XML (DTD, entities),
          │                   wrong namespace or shape, invalid JSON, an HTML page, a redirect
          └── SourceTooLarge  an answer over ``max_response_bytes`` (declared, streamed or decompressed)

A mistake in an administration's configuration is a ``ConnectorConfigError`` (a ``ValueError``) raised while
the connector is built, at start-up: ``setting`` is the dotted name of the offending setting
(``operations.person.fields.birth_date``), which the gateway turns into the file and line.

A subclass of ``SourceUnavailable`` is still "unavailable" to whoever catches the base class; only its
``code`` says more. The codes are part of the public answer (``sources[].error``), so they never change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp

# sign(method, path_and_query, body, audience) -> value for the Authorization header
Signer = Callable[[str, str, bytes, str], str]


class ConnectorError(Exception):
    """Base of every failure a connector reports. ``code`` is stable and safe to show."""

    code = "source_error"

    def __init__(self, source: str, detail: str = "") -> None:
        super().__init__(f"{source}: {detail}" if detail else source)
        self.source = source
        self.detail = detail


class SourceNotFound(ConnectorError):
    code = "subject_not_found"


class SourceTimeout(ConnectorError, TimeoutError):
    code = "source_timeout"


class SourceRejected(ConnectorError):
    code = "source_rejected"


class SourceQueryRefused(SourceRejected):
    """The administration refused the query itself (HTTP 400 or 422): its parameters, not the administration's
    health — its breaker does not count it, and a service call answers the caller 400."""


class SourceUnavailable(ConnectorError):
    code = "source_unavailable"


class SourceFault(SourceUnavailable):
    code = "source_fault"


class SourceMalformed(SourceUnavailable):
    code = "source_malformed"


class SourceTooLarge(SourceUnavailable):
    code = "source_too_large"


class ConnectorConfigError(ValueError):
    """A connector's configuration is wrong: ``setting`` names the offending setting, ``detail`` says why."""

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"`{setting}`: {detail}" if setting else detail)
        self.setting = setting
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Query:
    """What a connector is asked: an operation and its parameters (identifiers, periods...)."""

    operation: str
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Record:
    """A canonical answer: ``data`` follows the JSON Schema ``schemas/records/<kind>.json``."""

    source: str
    kind: str
    data: Mapping[str, Any]
    retrieved_at: datetime


@dataclass(frozen=True, slots=True)
class CallContext:
    """Everything a connector needs for one call, given by the gateway."""

    session: aiohttp.ClientSession
    sign: Signer
    request_id: str
    client_id: str
    purpose: str


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """One administration as configured in ``config/connectors/*.toml``.

    ``operations`` holds the ``[operations.<name>]`` tables as read, for the kind to parse and check; ``mapping``
    names a Python module instead (the escape hatch, see the kinds' docstrings); ``source`` is the file it came
    from, so that mistakes can name it."""

    name: str
    kind: str
    base_url: str
    audience: str
    mapping: str | None = None
    operations: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None
    timeout_s: float = 2.0
    connect_timeout_s: float = 1.0
    max_connections: int = 32
    max_response_bytes: int = 1_048_576
    options: Mapping[str, Any] = field(default_factory=dict)
    breaker: Mapping[str, Any] = field(default_factory=dict)  # [connector.breaker], see connectors.resilience
    bulkhead: Mapping[str, Any] = field(default_factory=dict)  # [connector.bulkhead]


@runtime_checkable
class Connector(Protocol):
    """One administration reachable by the gateway."""

    @property
    def name(self) -> str: ...

    @property
    def operations(self) -> frozenset[str]: ...

    async def fetch(self, query: Query, ctx: CallContext) -> Record: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Describable(Protocol):
    """A connector that can say what an operation takes and yields (both built-in kinds can): needed to expose
    its operations as services. ``describe`` returns a ``connectors.declared.OperationInfo``."""

    def describe(self, operation: str) -> Any: ...


ConnectorFactory = Callable[[ConnectorConfig, Path], Connector]
"""Builds a connector from its config and the project root (to find ``schemas/``)."""

AsyncCloser = Callable[[], Awaitable[None]]
