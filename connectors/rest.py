"""The generic REST/JSON connector kind (``kind = "rest"``): transport, limits, retries and error mapping.

An administration that speaks REST is configuration (``config/connectors/<name>.toml``) plus a mapping
module, named by ``config.mapping``, that defines ``OPERATIONS: dict[str, RestOperation]``: for each
operation, how to build the path and query from the query parameters and how to turn the JSON answer into
a canonical record. Every record is checked against ``schemas/records/<kind>.json`` before it leaves.

One call: sign it for this path and audience, send it through the gateway's shared session (at most
``max_connections`` at a time per connector, redirects never followed), look at the status and media type
before reading anything, read at most ``max_response_bytes`` (counted on the decoded bytes as they stream
in: an endless or decompressing body is cut off, and its connection closed, as soon as it crosses the
cap), require a JSON object. The whole call, body included, runs inside the one ``timeout_s`` deadline,
so a body that trickles in slowly times out too.

    HTTP 200 + JSON object matching the schema       → Record
    HTTP 404                                         → SourceNotFound
    HTTP 401 / 403                                   → SourceRejected
    no complete answer within ``timeout_s``          → SourceTimeout
    HTTP 500 and the other 5xx not listed below      → SourceFault
    a redirect; not JSON (an HTML page...); invalid JSON; JSON that is not an object; a record that does
    not fit its schema                               → SourceMalformed
    more than ``max_response_bytes`` (declared, streamed or decompressed)
                                                     → SourceTooLarge
    refused or broken connection, 502 / 503 / 504 (after the retry), other 4xx
                                                     → SourceUnavailable

Idempotent reads are tried at most twice, only after a connection error or a 502/503/504, with a jittered
pause, and always inside the one ``timeout_s`` deadline. Exception details are our own short words: the
backend's text never reaches them, nor do the messages of the decoder that read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_random
from yarl import URL

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

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 2
RETRY_JITTER_S = (0.01, 0.1)


@dataclass(frozen=True, slots=True)
class RestOperation:
    """One operation of a REST administration.

    ``path`` builds the path and query (values URL-quoted, see ``segment``/``with_query``) from the query
    parameters; ``to_record`` turns the decoded JSON object into the ``record_kind`` record's data.
    """

    method: str
    path: Callable[[Mapping[str, str]], str]
    record_kind: str
    to_record: Callable[[Any], dict[str, Any]]


def segment(value: str) -> str:
    """``value`` quoted as one path segment: no ``/``, and no ``.``/``..`` that a server would resolve."""
    return quote(value, safe="").replace(".", "%2E")


def with_query(path: str, query: Mapping[str, str | None]) -> str:
    """``path`` plus the URL-encoded query made of the parameters that are not None."""
    present = {k: v for k, v in query.items() if v is not None}
    return f"{path}?{urlencode(present, quote_via=quote)}" if present else path


class _Retryable(SourceUnavailable):
    """A failure worth one more try (connection error, 502/503/504); still a SourceUnavailable."""


class RestConnector:
    """A REST/JSON administration; satisfies ``connectors.base.Connector``."""

    def __init__(self, config: ConnectorConfig, root: Path) -> None:
        self._config = config
        mapping = import_module(config.mapping)
        operations = getattr(mapping, "OPERATIONS", None)
        if not isinstance(operations, dict) or not all(
            isinstance(op, RestOperation) for op in operations.values()
        ):
            raise ValueError(f"connector {config.name!r}: mapping {config.mapping!r} must define "
                             "OPERATIONS: dict[str, RestOperation]")
        self._operations: dict[str, RestOperation] = dict(operations)
        self._validators = record_validators(root, (op.record_kind for op in self._operations.values()),
                                             f"connector {config.name!r}")
        base = urlsplit(config.base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ValueError(f"connector {config.name!r}: base_url must be an http(s) URL")
        self._origin = f"{base.scheme}://{base.netloc}"
        self._prefix = base.path.rstrip("/")  # the server sees (and the signature covers) prefix + path
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s, connect=config.connect_timeout_s)
        self._slots = asyncio.Semaphore(config.max_connections)

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self._operations)

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the gateway."""

    async def fetch(self, query: Query, ctx: CallContext) -> Record:
        op = self._operations.get(query.operation)
        if op is None:
            raise ValueError(f"connector {self.name!r} has no operation {query.operation!r}")
        try:
            path_qs = self._prefix + op.path(query.params)
        except KeyError as exc:
            raise ValueError(f"connector {self.name!r}, operation {query.operation!r}: "
                             f"missing parameter {exc}") from None
        attempts = MAX_ATTEMPTS if op.method.upper() in IDEMPOTENT_METHODS else 1
        retrying = AsyncRetrying(
            # no new attempt once the pause could overrun the deadline: report the failure, not a timeout
            stop=stop_after_attempt(attempts) | stop_after_delay(self._config.timeout_s - RETRY_JITTER_S[1]),
            wait=wait_random(*RETRY_JITTER_S),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async with asyncio.timeout(self._config.timeout_s):
                payload = await self._call_with_retry(retrying, op.method.upper(), path_qs, ctx)
        except ConnectorError:
            raise
        except TimeoutError:
            raise SourceTimeout(self.name, "no answer in time") from None
        return Record(self.name, op.record_kind, self._to_record(op, payload), datetime.now(UTC))

    async def _call_with_retry(
        self, retrying: AsyncRetrying, method: str, path_qs: str, ctx: CallContext
    ) -> dict[str, Any]:
        async for attempt in retrying:
            with attempt:
                return await self._call(method, path_qs, ctx)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _call(self, method: str, path_qs: str, ctx: CallContext) -> dict[str, Any]:
        """One attempt: send, map the status and media type, read (capped), decode the JSON object."""
        headers = {"Accept": "application/json",
                   "Authorization": ctx.sign(method, path_qs, b"", self._config.audience)}
        url = URL(self._origin + path_qs, encoded=True)  # sent exactly as signed
        try:
            async with self._slots, ctx.session.request(
                method, url, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                if resp.status == 404:
                    await self._read_capped(resp)  # a normal answer: drain it so the connection is reused
                self._check_status(resp.status, resp.content_type)
                body = await self._read_capped(resp)
        except ConnectorError:
            raise
        except TimeoutError:  # also aiohttp.ServerTimeoutError and its subclasses
            raise SourceTimeout(self.name, "no answer in time") from None
        except aiohttp.ClientConnectionError as exc:
            raise _Retryable(self.name, "connection failed") from exc
        except Exception as exc:  # payload errors, bad URLs, anything unforeseen in the transport
            raise SourceUnavailable(self.name, "broken answer") from exc
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SourceMalformed(self.name, "answer is not valid JSON") from None
        if not isinstance(payload, dict):
            raise SourceMalformed(self.name, "answer is not a JSON object")
        return payload

    def _check_status(self, status: int, content_type: str) -> None:
        """Map every status but 200, and a 200 that is not JSON, before a byte of the body is read."""
        if status == 404:
            raise SourceNotFound(self.name, "subject unknown")
        if status in (401, 403):
            raise SourceRejected(self.name, f"call refused (HTTP {status})")
        if 300 <= status < 400:
            raise SourceMalformed(self.name, f"redirect not followed (HTTP {status})")
        if status in RETRY_STATUSES:
            raise _Retryable(self.name, f"HTTP {status}")
        if status >= 500:
            raise SourceFault(self.name, f"server error (HTTP {status})")
        if status != 200:
            raise SourceUnavailable(self.name, f"unexpected HTTP {status}")
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise SourceMalformed(self.name, "answer is not JSON")

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        return await read_capped(resp, self._config.max_response_bytes, self.name)

    def _to_record(self, op: RestOperation, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            data = op.to_record(payload)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SourceMalformed(self.name, "answer lacks expected fields") from None
        if not self._validators[op.record_kind].is_valid(data):
            raise SourceMalformed(self.name, f"answer does not fit the {op.record_kind} record")
        return data


__all__ = ["RestConnector", "RestOperation", "segment", "with_query"]
