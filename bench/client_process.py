"""The gateway's load generator in a process of its own (``python -m bench.verifications --client-process``).

By default the load generator shares the benchmark process with the gateway, so the gateway side pays for the
clients' work too (signing a client assertion, the HTTP client, reading the answer). With ``--client-process``
it runs here instead, in a spawned process, as a real client runs on another machine: the gateway's process
then does only the gateway's work, and that process's CPU is what the "bench" column shows for side (a), the
client's CPU having a column of its own. The parent keeps the measuring: it reads every process's CPU around
each phase, so the figures mean the same as in the in-process mode.

The child takes one phase at a time over a pipe (``PhaseOrder``), runs the same closed loop as the in-process
mode (``bench.verifications.drive`` over ``GatewayLoad.verify``) and sends back the ``Phase`` it measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

from bench.driver import Phase, drive
from bench.measure import cpu_seconds, system_busy_seconds
from bench.sides import GatewayLoad
from gateway.crypto import keys


@dataclass(frozen=True)
class ClientSpec:
    """What the client process needs to sign and send requests like ``GatewayClient``."""

    gateway_url: str
    key_path: Path
    audience: str
    client_id: str
    purpose: str
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class PhaseOrder:
    """One closed-loop phase for the child to run: request numbers from ``start``, ``count`` or ``duration_s``."""

    name: str
    start: int
    count: int | None
    duration_s: float | None
    concurrency: int
    verify_signatures: bool
    keep_latencies: bool = True


def _client_main(spec: ClientSpec, conn: Connection) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(spec, conn))


async def _serve(spec: ClientSpec, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    n = len(spec.subjects)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        try:
            load = GatewayLoad(spec.gateway_url, session, keys.load_private_pem(spec.key_path), spec.audience,
                               spec.client_id, spec.purpose)
            await load.fetch_keys()
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("ready", os.getpid()))
        while True:
            try:
                order = await loop.run_in_executor(None, conn.recv)
            except EOFError:  # the parent is gone
                return
            if not isinstance(order, PhaseOrder):  # (None: stop)
                return
            load.verify_signatures, load.bad_signatures = order.verify_signatures, 0

            async def work(i: int, tally: dict[str, int]) -> bool:
                return await load.verify(spec.subjects[i % n], f"BENCH-{i:08d}", tally)

            try:  # (drive counts each request's own failure; this is for a failure of the loop itself)
                phase = await drive(order.name, work, order.start, order.count, order.duration_s,
                                    order.concurrency, os.getpid(), keep_latencies=order.keep_latencies)
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}", 0))
                return
            conn.send(("done", phase, load.bad_signatures))


class ClientProcess:
    """The parent's handle: ``await run(order, sims_pid)`` is a ``Phase`` measured like ``drive``'s, with the
    client's CPU apart (``cpu_client_s``) and the benchmark process's own (``cpu_self_s``) being the gateway's."""

    def __init__(self, pid: int, conn: Connection) -> None:
        self.pid = pid
        self._conn = conn
        self.bad_signatures = 0

    async def run(self, order: PhaseOrder, sims_pid: int) -> Phase:
        cpu0, client0, sims0, all0 = (time.process_time(), cpu_seconds(self.pid), cpu_seconds(sims_pid),
                                      system_busy_seconds())
        loop0 = time.thread_time()  # this is the gateway's event-loop thread
        self._conn.send(order)
        status, phase, bad = await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)
        if status != "done":
            raise RuntimeError(f"the client process failed: {phase}")
        self.bad_signatures += bad
        assert isinstance(phase, Phase)
        phase.cpu_self_s = time.process_time() - cpu0
        phase.cpu_loop_s = time.thread_time() - loop0
        phase.cpu_client_s = cpu_seconds(self.pid) - client0
        phase.cpu_sims_s = cpu_seconds(sims_pid) - sims0
        phase.cpu_others_s = max(0.0, system_busy_seconds() - all0 - phase.cpu_self_s - phase.cpu_client_s
                                 - phase.cpu_sims_s)
        return phase


@contextlib.asynccontextmanager
async def client_process(spec: ClientSpec, start_timeout_s: float = 60.0) -> AsyncIterator[ClientProcess]:
    """Starts the client process and waits (without blocking this loop, which serves the gateway the child
    first asks for its keys) until it is ready."""
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    process = ctx.Process(target=_client_main, args=(spec, child_end), name="bench-client", daemon=True)
    process.start()
    child_end.close()
    loop = asyncio.get_running_loop()
    try:
        if not await loop.run_in_executor(None, parent_end.poll, start_timeout_s):
            raise RuntimeError(f"the client process did not start within {start_timeout_s:.0f} s")
        status, pid = parent_end.recv()
        if status != "ready":
            raise RuntimeError(f"the client process failed to start: {pid}")
        yield ClientProcess(int(pid), parent_end)
    finally:
        with contextlib.suppress(OSError):
            parent_end.send(None)
        parent_end.close()
        await loop.run_in_executor(None, process.join, 10)
        if process.is_alive():
            process.terminate()
            process.join(5)
