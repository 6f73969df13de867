"""``worker``: run procrastinate batch workers with the gateway's runtime (connectors, signing keys, access log,
consents) and no HTTP API — any number of them, on any number of machines sharing the PostgreSQL of ``[storage]``
(docs/batches.md). SIGTERM or SIGINT drains: no new chunk is taken, running ones finish (up to ``drain_s``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace

from gateway.cli.common import load_settings
from gateway.config.batches import engine_for
from gateway.config.settings import Settings
from gateway.web import logs


async def run_worker(settings: Settings) -> None:
    """The gateway's runtime without a listening socket: the app's start-up and clean-up only, the batch engine
    working in this process; until SIGTERM/SIGINT."""
    from aiohttp import web

    from gateway.web.app import create_app
    from gateway.web.runner import wait_for_signal
    from gateway.web.state import BATCHES

    app = create_app(replace(settings, batches=replace(settings.batches, serve_works=True)))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # runs cleanup_ctx: the runtime, and the engine's worker with it
    try:
        engine = app[BATCHES].engine
        print(f"batch worker {getattr(engine, 'name', '?')} running "
              f"({settings.batches.worker_concurrency} chunks at once); SIGTERM drains", flush=True)
        await wait_for_signal()
        print("draining: running chunks finish, no new one is taken", flush=True)
    finally:
        await runner.cleanup()


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
    asyncio.run(run_worker(settings))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="run batch chunks from the PostgreSQL job queue (procrastinate)",
                       description="Run procrastinate workers for batches with the gateway's runtime and no HTTP "
                                   "API. Start any number, on any machine sharing [storage]'s PostgreSQL.")
    w.add_argument("--concurrency", type=int, help="chunks run at once (default: [batches] worker_concurrency)")
    w.set_defaults(func=cmd_worker)
