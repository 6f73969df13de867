"""The generic REST/JSON connector kind (``kind = "rest"``): transport, limits, retries and error mapping.

An administration that speaks REST is configuration (``config/connectors/<name>.toml``): each
``[operations.<name>]`` table gives its ``record`` (the canonical record it yields, checked against
``schemas/records/<record>.json`` or ``record_schema``), ``method`` (GET by default; GET and HEAD are retried),
``path`` (a template: ``/massar/v1/pupils/{idcs}/enrolment``, each value quoted as one segment), ``query``
(a table of templates; an absent optional parameter is left out), ``body`` (a JSON template, for POST),
``params``, ``fields`` (JSON Pointers into the reply, see ``connectors.declared``) and ``not_found``: the
statuses that mean "the administration does not know the subject" (``status``, default 404) and/or a reply
value that means it (``at`` + ``equals``). The escape hatch: ``mapping = "module"`` names a Python module that
defines ``OPERATIONS: dict[str, RestOperation]`` instead.

One call: sign it for this path and audience, send it through the gateway's shared session (at most
``max_connections`` at a time per connector, redirects never followed), look at the status and media type
before reading anything, read at most ``max_response_bytes`` (counted on the decoded bytes as they stream
in: an endless or decompressing body is cut off, and its connection closed, as soon as it crosses the
cap), require a JSON object. The whole call, body included, runs inside the one ``timeout_s`` deadline,
so a body that trickles in slowly times out too.

    HTTP 200 + JSON object matching the schema       → Record
    HTTP 404 (or the configured not-found rule)      → SourceNotFound
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
    ConnectorConfigError,
    ConnectorError,
    Query,
    Record,
    SourceFault,
    SourceMalformed,
    SourceNotFound,
    SourceQueryRefused,
    SourceRejected,
    SourceTimeout,
    SourceUnavailable,
)
from connectors.declared import (
    MissingValue,
    OperationInfo,
    Params,
    check_fields_fit,
    check_template,
    fill,
    load_operations,
    parse_fields,
    parse_params,
    read_fields,
    record_schema,
    refuse_unknown,
    table_of,
    text_of,
)
from connectors.transport import read_capped

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 2
RETRY_JITTER_S = (0.01, 0.1)


@dataclass(frozen=True, slots=True)
class RestOperation:
    """One operation of a REST administration.

    ``path`` builds the path and query (values URL-quoted, see ``segment``/``with_query``) from the query
    parameters; ``to_record`` turns the decoded JSON object into the ``record_kind`` record's data, or returns
    None when the answer says the subject is unknown; ``body`` builds a JSON body (None: no body);
    ``not_found_statuses`` are the statuses that mean the subject is unknown; ``params``, when given, refuses a
    query that does not fit before anything is sent.
    """

    method: str
    path: Callable[[Mapping[str, str]], str]
    record_kind: str
    to_record: Callable[[Any], dict[str, Any] | None]
    body: Callable[[Mapping[str, str]], Any] | None = None
    not_found_statuses: frozenset[int] = frozenset({404})
    params: Params | None = None


def segment(value: str) -> str:
    """``value`` quoted as one path segment: no ``/``, and no ``.``/``..`` that a server would resolve."""
    return quote(value, safe="").replace(".", "%2E")


def with_query(path: str, query: Mapping[str, str | None]) -> str:
    """``path`` plus the URL-encoded query made of the parameters that are not None."""
    present = {k: v for k, v in query.items() if v is not None}
    return f"{path}?{urlencode(present, quote_via=quote)}" if present else path


def split_pointer(pointer: str, setting: str) -> tuple[str, ...]:
    """A JSON Pointer (RFC 6901) as its reference tokens; ``""`` is the whole document."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ConnectorConfigError(setting, f"{pointer!r} is not a JSON Pointer (it must start with '/')")
    tokens = pointer[1:].split("/")
    if any("~" in t.replace("~0", "").replace("~1", "") for t in tokens):
        raise ConnectorConfigError(setting, f"{pointer!r}: '~' must be written ~0 or ~1")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


def follow_pointer(document: Any, tokens: tuple[str, ...]) -> Any:
    """The value the pointer leads to, or None when it leads nowhere."""
    value = document
    for token in tokens:
        if isinstance(value, dict):
            value = value.get(token)
        elif isinstance(value, list) and token.isdigit() and (token == "0" or not token.startswith("0")):
            index = int(token)
            value = value[index] if index < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


_REST_KEYS = ("record", "record_schema", "method", "path", "query", "body", "params", "one_of", "fields",
              "not_found", "description", "summary")


def declared_operation(name: str, op_table: Any, root: Path) -> tuple[RestOperation, Any]:
    """One ``[operations.<name>]`` table of a REST administration, checked; and its record schema."""
    setting = f"operations.{name}"
    op = table_of(op_table, setting)
    refuse_unknown(op, _REST_KEYS, setting)
    kind = text_of(op, "record", setting)
    schema = record_schema(root, kind, op.get("record_schema"), setting)
    method = text_of(op, "method", setting, "GET").upper()
    if method not in ("GET", "HEAD", "POST"):
        raise ConnectorConfigError(f"{setting}.method", "must be GET, HEAD or POST")
    params = parse_params(op, setting)
    path = text_of(op, "path", setting)
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ConnectorConfigError(f"{setting}.path", "must start with '/' and hold no query")
    check_template(path, params, f"{setting}.path", whole_only=True)
    query = table_of(op.get("query", {}), f"{setting}.query")
    for key, value in query.items():
        if not isinstance(value, str):
            raise ConnectorConfigError(f"{setting}.query.{key}", "must be a string template")
    check_template(query, params, f"{setting}.query")
    body_template = op.get("body")
    if body_template is not None:
        if method != "POST":
            raise ConnectorConfigError(f"{setting}.body", "only a POST has a body")
        check_template(body_template, params, f"{setting}.body")
    fields = parse_fields(op.get("fields", {}), f"{setting}.fields", split_pointer)
    if not fields:
        raise ConnectorConfigError(f"{setting}.fields", "an operation needs the fields of its record")
    check_fields_fit(fields, schema, f"{setting}.fields")
    statuses, when = _not_found(op.get("not_found", {}), f"{setting}.not_found")

    def build_path(given: Mapping[str, str]) -> str:
        return str(with_query(fill(path, given, segment), fill(query, given)))

    def to_record(answer: Any) -> dict[str, Any] | None:
        if when is not None and follow_pointer(answer, when[0]) == when[1]:
            return None
        return read_fields(answer, fields, follow_pointer)

    def build_body(given: Mapping[str, str]) -> Any:
        return fill(body_template, given)

    return RestOperation(method, build_path, kind, to_record, build_body if body_template is not None else None,
                         statuses, params), schema.validator


def _not_found(raw: Any, setting: str) -> tuple[frozenset[int], tuple[tuple[str, ...], Any] | None]:
    table = table_of(raw, setting)
    refuse_unknown(table, ("status", "at", "equals"), setting)
    status = table.get("status", [404])
    statuses = status if isinstance(status, list) else [status]
    if not all(isinstance(s, int) and not isinstance(s, bool) and 400 <= s < 500 for s in statuses):
        raise ConnectorConfigError(f"{setting}.status", "must be 4xx status codes")
    when = None
    if "at" in table or "equals" in table:
        if "at" not in table or "equals" not in table:
            raise ConnectorConfigError(setting, "a not-found value needs both `at` and `equals`")
        when = (split_pointer(text_of(table, "at", setting), f"{setting}.at"), table["equals"])
    return frozenset(statuses), when


class _Retryable(SourceUnavailable):
    """A failure worth one more try (connection error, 502/503/504); still a SourceUnavailable."""


class RestConnector:
    """A REST/JSON administration; satisfies ``connectors.base.Connector``."""

    def __init__(self, config: ConnectorConfig, root: Path) -> None:
        self._config = config
        self._operations, self._validators, self._summaries = load_operations(
            config, root, RestOperation, lambda name, table: declared_operation(name, table, root))
        base = urlsplit(config.base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ConnectorConfigError("base_url", "must be an http(s) URL")
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

    def describe(self, operation: str) -> OperationInfo:
        """What ``operation`` takes and yields (``KeyError`` when this administration has no such operation)."""
        op = self._operations[operation]
        return OperationInfo(operation, op.record_kind, self._validators[operation].schema, op.params,
                             self._summaries.get(operation, ""))

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the gateway."""

    async def fetch(self, query: Query, ctx: CallContext) -> Record:
        op = self._operations.get(query.operation)
        if op is None:
            raise ValueError(f"connector {self.name!r} has no operation {query.operation!r}")
        try:
            if op.params is not None:
                op.params.check(query.params)
            path_qs = self._prefix + op.path(query.params)
            body = b"" if op.body is None else orjson.dumps(op.body(query.params))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"connector {self.name!r}, operation {query.operation!r}: {exc}") from None
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
                payload = await self._call_with_retry(retrying, op, path_qs, body, ctx)
        except ConnectorError:
            raise
        except TimeoutError:
            raise SourceTimeout(self.name, "no answer in time") from None
        return Record(self.name, op.record_kind, self._to_record(query.operation, op, payload), datetime.now(UTC))

    async def _call_with_retry(
        self, retrying: AsyncRetrying, op: RestOperation, path_qs: str, body: bytes, ctx: CallContext
    ) -> dict[str, Any]:
        async for attempt in retrying:
            with attempt:
                return await self._call(op, path_qs, body, ctx)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _call(self, op: RestOperation, path_qs: str, body: bytes, ctx: CallContext) -> dict[str, Any]:
        """One attempt: send, map the status and media type, read (capped), decode the JSON object."""
        method = op.method.upper()
        headers = {"Accept": "application/json",
                   "Authorization": ctx.sign(method, path_qs, body, self._config.audience)}
        if op.body is not None:
            headers["Content-Type"] = "application/json"
        url = URL(self._origin + path_qs, encoded=True)  # sent exactly as signed
        try:
            async with self._slots, ctx.session.request(
                method, url, headers=headers, data=body or None, timeout=self._timeout, allow_redirects=False
            ) as resp:
                if resp.status in op.not_found_statuses:
                    await self._read_capped(resp)  # a normal answer: drain it so the connection is reused
                    raise SourceNotFound(self.name, "subject unknown")
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
        if status in (401, 403):
            raise SourceRejected(self.name, f"call refused (HTTP {status})")
        if status in (400, 422):
            raise SourceQueryRefused(self.name, f"query refused (HTTP {status})")
        if 300 <= status < 400:
            raise SourceMalformed(self.name, f"redirect not followed (HTTP {status})")
        if status in RETRY_STATUSES:
            raise _Retryable(self.name, f"HTTP {status}")
        if status >= 500:
            raise SourceFault(self.name, f"server error (HTTP {status})")
        if 200 < status < 300:  # 204 No Content and the like: no JSON answer where the contract has one
            raise SourceMalformed(self.name, f"no JSON answer (HTTP {status})")
        if status != 200:
            raise SourceUnavailable(self.name, f"unexpected HTTP {status}")
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise SourceMalformed(self.name, "answer is not JSON")

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        return await read_capped(resp, self._config.max_response_bytes, self.name)

    def _to_record(self, operation: str, op: RestOperation, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            data = op.to_record(payload)
        except (KeyError, TypeError, ValueError, AttributeError, MissingValue):
            raise SourceMalformed(self.name, "answer lacks expected fields") from None
        if data is None:
            raise SourceNotFound(self.name, "subject unknown")
        if not self._validators[operation].is_valid(data):
            raise SourceMalformed(self.name, f"answer does not fit the {op.record_kind} record")
        return data


__all__ = ["RestConnector", "RestOperation", "declared_operation", "follow_pointer", "segment", "split_pointer",
           "with_query"]
