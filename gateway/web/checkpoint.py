"""The latest checkpoint of the access log, on every answer: the ``Log-Checkpoint`` response header.

The header's value is the padded standard base64 (RFC 4648 section 4) of the UTF-8 bytes of the C2SP signed note
(docs/merkle-log.md section 12) with the cosignatures gathered — the note is several lines, a header is one.
``CheckpointBeacon`` holds the value precomputed: it changes only when a checkpoint is published (the guard's
``on_checkpoint``) or found in the shared log (``refresh``, for replicas that do not sign), so an answer costs
one dictionary store. It keeps the largest checkpoint offered (at the same size, the latest note: more
cosignatures); the header is absent only until the gateway has a checkpoint at all.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from aiohttp import web

from gateway import background
from gateway.audit.checkpoint import CheckpointError, parse_checkpoint, parse_note
from gateway.audit.store import AccessLog

HEADER = "Log-Checkpoint"
log = structlog.get_logger("gateway.audit")


def encode_header(note: str) -> str:
    """The header value for ``note``."""
    return base64.b64encode(note.encode("utf-8")).decode("ascii")


def decode_header(value: str) -> str:
    """The note in a header value; ``ValueError`` if it is not padded standard base64 of UTF-8."""
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the {HEADER} header is not base64 of a UTF-8 note") from exc


class CheckpointBeacon:
    """The latest checkpoint note, its size and its header value (see the module docstring)."""

    def __init__(self) -> None:
        self.note: str | None = None
        self.size = -1
        self.header: str | None = None

    def offer(self, note: str | None) -> None:
        """Keep ``note`` if it states at least the size held (a malformed note is ignored, and logged)."""
        if note is None or note == self.note:
            return
        try:
            size = parse_checkpoint(parse_note(note).text).size
        except CheckpointError as exc:
            log.error("checkpoint_unusable_for_header", error=str(exc))
            return
        if size >= self.size:
            self.note, self.size, self.header = note, size, encode_header(note)

    async def refresh(self, access_log: AccessLog) -> None:
        """Offer the largest checkpoint kept in the log (another replica may have published it)."""
        self.offer(await access_log.checkpoint())

    @asynccontextmanager
    async def following(self, access_log: AccessLog, every_s: float = 1.0) -> AsyncIterator[None]:
        """``refresh`` now and every ``every_s`` seconds for the ``async with`` block; errors are logged."""
        async def follow() -> None:
            while True:
                try:
                    await self.refresh(access_log)
                except Exception as exc:
                    log.warning("checkpoint_refresh_failed", error=type(exc).__name__)
                await asyncio.sleep(every_s)

        task = asyncio.create_task(follow(), name="checkpoint-beacon")
        try:
            yield
        finally:
            await background.stop(task)


BEACON: web.AppKey[CheckpointBeacon] = web.AppKey("checkpoint_beacon", CheckpointBeacon)


async def add_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the ``Log-Checkpoint`` header on every answer, once there is a checkpoint."""
    beacon = request.config_dict.get(BEACON)  # (the console's sub-application shares the main one's)
    value = beacon.header if beacon is not None else None
    if value is not None:
        response.headers[HEADER] = value
