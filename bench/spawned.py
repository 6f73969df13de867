"""The benchmarks' helper processes, spawned: the four simulated administrations on free loopback ports, and a
stand-in OpenTelemetry collector that counts the traces it receives (``--tracing``)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

from gateway.config.settings import Settings
from gateway.web.runner import simulators_running


def _simulators_main(settings: Settings, conn: Connection) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_simulators(settings, conn))


async def _serve_simulators(settings: Settings, conn: Connection) -> None:
    try:
        # trusts the gateway keys published in the run's state directory (generated there by the parent)
        running = simulators_running(settings, free_ports=True)
        sims = await running.__aenter__()
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    try:
        conn.send(("ready", sims.urls))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)  # a message, or the parent gone
        await stop.wait()
    finally:
        await running.__aexit__(None, None, None)


@dataclass(frozen=True)
class SimulatorProcess:
    pid: int
    urls: dict[str, str]


@contextlib.contextmanager
def simulators_process(settings: Settings, start_timeout_s: float = 60.0) -> Iterator[SimulatorProcess]:
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    process = ctx.Process(target=_simulators_main, args=(settings, child_end), name="bench-simulators",
                          daemon=True)
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(start_timeout_s):
            raise RuntimeError(f"the simulators did not start within {start_timeout_s:.0f} s")
        status, payload = parent_end.recv()
        if status != "ready":
            raise RuntimeError(f"the simulators failed to start: {payload}")
        assert process.pid is not None
        yield SimulatorProcess(process.pid, dict(payload))
    finally:
        with contextlib.suppress(OSError):
            parent_end.send(("stop", None))
        parent_end.close()
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)


def _otlp_sink_main(conn: Connection) -> None:
    """A stand-in OpenTelemetry collector (``--tracing``): accepts OTLP/HTTP trace exports and counts them."""
    from aiohttp import web

    async def serve() -> None:
        tally = {"exports": 0, "bytes": 0}

        async def traces(request: web.Request) -> web.Response:
            tally["bytes"] += len(await request.read())
            tally["exports"] += 1
            return web.Response(body=b"", content_type="application/x-protobuf")

        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/traces", traces)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        conn.send(tally)
        await runner.cleanup()

    asyncio.run(serve())


@contextlib.contextmanager
def otlp_sink() -> Iterator[Callable[[], dict[str, int]]]:
    """``--tracing``: a collector in its own process; the gateway exports to it (``OTEL_*`` variables set here,
    read by the gateway when it starts). Yields a function that stops it and returns what it received."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_otlp_sink_main, args=(child,), name="bench-otlp-sink", daemon=True)
    process.start()
    port = parent.recv()
    saved = {k: os.environ.get(k) for k in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")}
    os.environ["OTEL_TRACES_EXPORTER"] = "otlp"
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"http://127.0.0.1:{port}/v1/traces"
    received: dict[str, int] = {}

    def stop() -> dict[str, int]:
        if not received:
            parent.send("stop")
            received.update(parent.recv())
        return received

    try:
        yield stop
    finally:
        with contextlib.suppress(OSError, EOFError):
            stop()
        process.join(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
