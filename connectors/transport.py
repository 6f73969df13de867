"""What both connector kinds share about talking to an administration: reading an answer under its size cap,
and the JSON Schemas every canonical record is checked against before it leaves a connector."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import aiohttp
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from connectors.base import SourceTooLarge

CHUNK = 65_536


def backend_session(trace_configs: list[aiohttp.TraceConfig] | None = None) -> aiohttp.ClientSession:
    """The gateway's one session towards the administrations (created once, shared by every connector).

    aiohttp silently sends an idempotent request a second time when a reused connection turns out closed; the
    administration would then receive the same signed request — the same ``jti`` — twice, and take the second
    for a replay (docs/security.md section 3: a new ``jti`` for every call and every retry). That retry is off
    here; the REST connectors' own retry (``connectors.rest``) signs each attempt anew."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512, limit_per_host=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=30), raise_for_status=False, auto_decompress=True,
        trace_configs=trace_configs)
    session._retry_connection = False  # (no public switch; aiohttp's own test client sets it the same way)
    return session


async def read_capped(resp: aiohttp.ClientResponse, cap: int, source: str) -> bytes:
    """The decoded body, or ``SourceTooLarge`` (connection closed) as soon as it crosses ``cap``.

    Counted on decoded bytes as they stream in, so endless and decompressing ("zip bomb") answers stop
    at the cap; a declared length over the cap is refused before reading.
    """
    declared = resp.content_length
    if declared is not None and declared > cap and "Content-Encoding" not in resp.headers:
        resp.close()
        raise SourceTooLarge(source, "answer too large")
    chunks: list[bytes] = []
    size = 0
    while chunk := await resp.content.read(CHUNK):
        size += len(chunk)
        if size > cap:
            resp.close()  # never hand a half-read connection back to the pool
            raise SourceTooLarge(source, "answer too large")
        chunks.append(chunk)
    return b"".join(chunks)


def record_validators(root: Path, kinds: Iterable[str], where: str) -> dict[str, Draft202012Validator]:
    """One validator per record kind, from ``schemas/records/<kind>.json``; a bad schema fails at start-up."""
    validators: dict[str, Draft202012Validator] = {}
    for kind in kinds:
        if kind in validators:
            continue
        schema_path = root / "schemas" / "records" / f"{kind}.json"
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where}: cannot load record schema {schema_path}: {exc}") from exc
        Draft202012Validator.check_schema(schema)
        validators[kind] = Draft202012Validator(schema)
    return validators
