"""Logging can never break a request."""

from __future__ import annotations

import io
import sys

import orjson
import pytest
import structlog

from gateway.web import logs


def test_closed_stderr_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    logs.configure(json=True)
    closed = io.TextIOWrapper(io.BytesIO())
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    structlog.get_logger("t").error("still_fine", request_id="r")  # must not raise


def test_json_lines_carry_bound_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    logs.configure(json=True)
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(buffer, write_through=True))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="abc123")
    structlog.get_logger("t").info("hello", source="civil_registry")
    structlog.contextvars.clear_contextvars()
    line = orjson.loads(buffer.getvalue().splitlines()[-1])
    assert line["event"] == "hello" and line["request_id"] == "abc123" and line["level"] == "info"
