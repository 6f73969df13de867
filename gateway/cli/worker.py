"""``worker``: run procrastinate batch workers with the gateway's runtime (connectors, signing keys, access log,
consents) and no HTTP API — any number of them, on any number of machines sharing the PostgreSQL of ``[storage]``
(docs/batches.md). SIGTERM or SIGINT drains: no new chunk is taken, running ones finish (up to ``drain_s``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from typing import Any

from gateway.cli.common import load_settings
from gateway.config.batches import engine_for
from gateway.config.settings import Settings
from gateway.web import logs


async def run_worker(settings: Settings, probe_port: int | None = None) -> None:
    """The gateway's runtime without its API: the app's start-up and clean-up only, the batch engine working in
    this process; until SIGTERM/SIGINT. With ``probe_port``, ``/healthz``, ``/readyz`` and ``/metrics`` (the
    gateway's, on this process's own registry: batch progress, administrations' calls) on that port, nothing else."""
    from aiohttp import web

    from gateway.web.app import create_app
    from gateway.web.runner import settle_heap, wait_for_signal
    from gateway.web.state import BATCHES

    app = create_app(replace(settings, batches=replace(settings.batches, serve_works=True)))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # runs cleanup_ctx: the runtime, and the engine's worker with it
    probes = await _serve_probes(app, settings.host, probe_port) if probe_port is not None else None
    try:
        engine = app[BATCHES].engine
        print(f"batch worker {getattr(engine, 'name', '?')} running "
              f"({settings.batches.worker_concurrency} chunks at once); SIGTERM drains", flush=True)
        settle_heap()
        await wait_for_signal()
        print("draining: running chunks finish, no new one is taken", flush=True)
    finally:
        if probes is not None:
            await probes.cleanup()
        await runner.cleanup()


async def _serve_probes(app: Any, host: str, port: int) -> Any:
    """The probes and metrics of a worker: the gateway's own handlers over this process's runtime."""
    from aiohttp import web

    from gateway.api import public
    from gateway.web.metrics import handler as metrics_handler
    from gateway.web.state import METRICS, RUNTIME

    probe = web.Application()
    probe[RUNTIME] = app[RUNTIME]
    probe.router.add_get("/healthz", public.healthz)
    probe.router.add_get("/readyz", public.readyz)
    probe.router.add_get("/metrics", metrics_handler(app[METRICS]))
    runner = web.AppRunner(probe, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"probes and metrics on http://{host}:{port} (/healthz, /readyz, /metrics)", flush=True)
    return runner


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if engine_for(settings.batches, settings.storage_backend) != "procrastinate":
        print("anss-gateway worker runs the procrastinate engine: set [storage] backend = \"postgres\" (and "
              "[batches] engine = \"auto\" or \"procrastinate\"); the embedded engine runs inside `serve`",
              file=sys.stderr)
        return 2
    if args.concurrency:
        settings = replace(settings, batches=replace(settings.batches, worker_concurrency=args.concurrency))
    logs.configure(json=True)
    asyncio.run(run_worker(settings, args.probe_port))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="run batch chunks from the PostgreSQL job queue (procrastinate)",
                       description="Run procrastinate workers for batches with the gateway's runtime and no HTTP "
                                   "API. Start any number, on any machine sharing [storage]'s PostgreSQL.")
    w.add_argument("--concurrency", type=int, help="chunks run at once (default: [batches] worker_concurrency)")
    w.add_argument("--probe-port", type=int, default=None,
                   help="serve /healthz, /readyz and /metrics on this port of the configured host (default: none, "
                        "no socket at all); the API is never served by a worker")
    w.set_defaults(func=cmd_worker)
