"""Structured JSON logs (structlog): one pipeline, request id bound per request, secrets never logged.

Logging must never break a request: the sink looks up ``sys.stderr`` at write time (so a swapped or
closed stream is not kept) and drops a line it cannot write rather than raising into the caller.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog


class StderrSink:
    """A structlog logger writing rendered lines to the current ``sys.stderr``; never raises."""

    def msg(self, message: str | bytes) -> None:
        line = message if isinstance(message, bytes) else message.encode("utf-8", "replace")
        try:
            stream = sys.stderr
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                buffer.write(line + b"\n")
            else:
                stream.write(line.decode("utf-8", "replace") + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _sink(*_: Any) -> StderrSink:
    return StderrSink()


def configure(level: str = "INFO", json: bool = True) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=orjson.dumps) if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_sink,
        cache_logger_on_first_use=True,
    )
