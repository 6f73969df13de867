"""Verifications per second through the gateway, against a bare client making the same backend calls.

    python -m bench.verifications [--households N] [--concurrency C] [--duration S | --requests R]
                                  [--rounds K] [--memory-run M] [--profile] [--strict]

The four simulators run in a separate process (spawned), on free loopback ports, trusting the gateway key
generated for the run in a temporary state directory. This process then runs, with the same households in
the same order and the same concurrency, baseline first:

(b) the baseline: for each household, exactly the backend calls the gateway would make (the requested
    checks' plans from the check registry, in the same rounds; with the built-in checks, round 1: person,
    family, coverage and declarations of the subject at once; round 2: every child's enrolment and
    coverage, every spouse's declarations at once), through the project's own connectors (same zeep
    envelopes, same parsing and record validation), one aiohttp session set up like the gateway's, and
    the same outbound call signatures (the administrations check them). Nothing else: no client
    authentication, no policy, no rule evaluation, no access log, no response signature, no extra hop.
(a) the real gateway (``gateway_running``; its SQLite stores and JSON logs in the temporary state
    directory; the per-client rate limit set out of reach), driven by a load generator in this same
    process (or, with ``--client-process``, in its own: ``bench/client_process.py``) that signs a client
    assertion per request like ``GatewayClient`` (the answers' signatures are verified during warmup; in
    the timed part only with ``--verify-signatures``).

Before timing: one untimed look-up per household warms the simulators' household cache, then each side has
an uncounted warmup. ``--rounds K`` alternates (b) and (a) K times; the verdict takes the median ratio. The
plans are checked to be the same: the backend calls the gateway reports in its answers must equal the
baseline's, source by source, and the access log must hold one entry per gateway request. The CPU each
side used, and what other processes used meanwhile, are printed with the results. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import math
import multiprocessing
import os
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.client_process import ClientProcess, ClientSpec, PhaseOrder, client_process
from connectors.base import CallContext, Connector, ConnectorError, Query, Record, SourceNotFound
from connectors.registry import build as build_connector
from gateway.client import client_assertion
from gateway.config.settings import Settings, load
from gateway.crypto import keys
from gateway.crypto.jws import SIGNATURE_HEADER, SignatureInvalid, verify_detached
from gateway.crypto.keyring import dev_client_key_path, load_gateway_key
from gateway.crypto.keys import PublicKey, public_from_jwk
from gateway.crypto.outbound import OutboundSigner
from gateway.federation.checks.protocol import Operation
from gateway.federation.checks.registry import CheckRegistry, discover
from gateway.federation.evidence import Evidence
from gateway.federation.executor import Federation
from gateway.federation.plan import first_round, next_round
from gateway.policy.rights import authorise
from gateway.web import logs
from gateway.web.runner import gateway_running, simulators_running
from simulators.population import Population

CLIENT_ID = "anss.asd"
PURPOSE = "asd.eligibility"
# --consent: a purpose resting on each citizen's consent, so every request also looks its consent up
CONSENT_CLIENT_ID = "mhpv.housing"
CONSENT_PURPOSE = "partner.social-housing"
CONSENT_PATH = "/v1/consents"
VERIFY_PATH = "/v1/verifications"
TARGET_RATIO = 0.8  # issue 10 §7: at concurrency 16, median of 3 rounds, with metrics and breakers on
CONSENT_TARGET_RATIO = 0.7  # (--consent: fewer backend calls per verification, so the fixed cost weighs more)
SIMULATOR_CACHE = 4096  # the simulators' household cache (Population: lru_cache maxsize)
WorkFn = Callable[[int, dict[str, int]], Awaitable[bool]]


# ---------------------------------------------------------------- process measurements


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc; peak RSS where /proc is missing."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _page_size()
    except OSError:
        if pid is not None:
            return 0
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU time all processes on the machine have used (every core), from /proc/stat; 0 where missing."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:9]]  # user .. steal (guest is inside user)
    except (OSError, ValueError):
        return 0.0
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _busy() -> str | None:
    """A note if the machine is already busy (1-minute load average ≥ 0.5), else None."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return None
    return f"the 1-minute load average is {load1:.2f} before the run" if load1 >= 0.5 else None


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


# ---------------------------------------------------------------- settings and households


def bench_settings(state_dir: Path) -> Settings:
    """The project's settings (config/), with a state directory and a gateway key generated for this run.

    The benchmark measures capacity, so the per-client rate limit and the administrations' bulkheads are set
    out of reach; the limiter and the bulkheads are still consulted on every request and call, as served (at
    concurrency 64 the shipped bulkhead of 64 calls in flight per administration would refuse some second-round
    calls, and the two sides would no longer make the same calls).
    """
    env = {k: v for k, v in os.environ.items() if k in ("ANSS_GATEWAY_CONFIG", "ANSS_GATEWAY_SIMULATOR_SEED")}
    env["ANSS_GATEWAY_STATE_DIR"] = str(state_dir)
    settings = load(env=env)
    settings = replace(settings, host="127.0.0.1", state_dir=state_dir, signing_key_file=None,
                       pseudonym_key_file=None, audit_database=state_dir / "access-log.sqlite3")
    default_limit = getattr(settings, "default_rate_limit", None)
    if default_limit is not None:
        clients = {cid: replace(c, rate_limit=None) if getattr(c, "rate_limit", None) else c
                   for cid, c in settings.clients.items()}
        settings = replace(settings, clients=clients,  # type: ignore[call-arg,unused-ignore]
                           default_rate_limit=replace(default_limit, rate_per_s=1e9, burst=10**9))
    connectors = tuple(replace(c, bulkhead={**c.bulkhead, "max_concurrent": 1_000_000}) for c in settings.connectors)
    return replace(settings, connectors=connectors)


def sample_households(settings: Settings, count: int, seed: str) -> list[str]:
    """The fathers' (slot 0) IDCS of ``count`` distinct households drawn with a fixed seed."""
    population = Population(settings.simulators.seed, settings.simulators.households)
    count = min(count, population.households)
    indices = random.Random(f"bench-households:{seed}").sample(range(population.households), count)
    return [population.idcs_of(index, 0) for index in indices]


# ---------------------------------------------------------------- the simulators, in their own process


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


# ---------------------------------------------------------------- (b) the baseline


def new_session() -> aiohttp.ClientSession:
    """A client session set up like the gateway's own (gateway/web/app.py)."""
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30),
                                 raise_for_status=False, auto_decompress=True)


class Baseline:
    """The gateway's backend plan for one subject (gateway/federation/executor.py), with nothing around it:
    the same checks' plans (the check registry), run in the same rounds, without tallies or evaluation."""

    def __init__(self, connectors: Mapping[str, Connector], session: aiohttp.ClientSession, sign: OutboundSigner,
                 checks: tuple[str, ...], client_id: str = CLIENT_ID, purpose: str = PURPOSE,
                 registry: CheckRegistry | None = None) -> None:
        self.client_id, self.purpose = client_id, purpose
        self.routes = Federation(connectors).routes  # the same operation → connector routing
        self.session = session
        self.sign = sign
        known = registry if registry is not None else discover()
        self.plans = [known[c] for c in checks]

    async def _ask(self, op: Operation, ctx: CallContext, tally: dict[str, int]) -> Record | ConnectorError:
        connector = self.routes[op.name]
        tally[connector.name] = tally.get(connector.name, 0) + 1
        try:
            return await connector.fetch(Query(op.name, op.params), ctx)
        except ConnectorError as exc:
            return exc

    async def verify(self, idcs: str, tally: dict[str, int]) -> bool:
        """True if every backend answered (a subject unknown to one administration is an answer)."""
        evidence = Evidence(subject_idcs=idcs, today=datetime.now(UTC).date())
        ctx = CallContext(self.session, self.sign, uuid.uuid4().hex, self.client_id, self.purpose)
        calls = first_round(self.plans, evidence)
        ok, first = True, True
        while calls:
            answers = await asyncio.gather(*(self._ask(op, ctx, tally) for op in calls))
            for op, answer in zip(calls, answers, strict=True):
                evidence.answers[(op.name, op.key)] = answer
            ok = ok and all(isinstance(a, Record | SourceNotFound) for a in answers)
            if first:  # every sampled father exists, with his family: anything else is a failed run
                family = evidence.answers.get(("family", idcs))
                if not isinstance(evidence.answers[("person", idcs)], Record) or isinstance(family, ConnectorError):
                    return False
                first = False
            calls = next_round(self.plans, evidence)
        return ok


# ---------------------------------------------------------------- (a) the gateway's load generator


class GatewayLoad:
    """Signed verification requests, as ``GatewayClient`` sends them; counts the backend calls answered."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, key: keys.SigningKey, audience: str,
                 client_id: str = CLIENT_ID, purpose: str = PURPOSE) -> None:
        self.client_id, self.purpose = client_id, purpose
        self.url = base_url.rstrip("/") + VERIFY_PATH
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.key = key
        self.audience = audience
        self.gateway_keys: dict[str, PublicKey] = {}
        self.verify_signatures = False
        self.bad_signatures = 0

    async def fetch_keys(self) -> None:
        async with self.session.get(f"{self.base_url}/.well-known/jwks.json") as resp:
            document = await resp.json(content_type=None)
        self.gateway_keys = {k["kid"]: public_from_jwk(k) for k in document["keys"]}

    async def verify(self, idcs: str, case_ref: str, tally: dict[str, int]) -> bool:
        body = orjson.dumps({"subject": {"idcs": idcs}, "purpose": self.purpose, "case_ref": case_ref})
        headers = {"Content-Type": "application/json",
                   "Authorization": "Bearer " + client_assertion(self.key, self.client_id, self.audience, "POST",
                                                                 VERIFY_PATH, body)}
        async with self.session.post(self.url, data=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
            signature = resp.headers.get(SIGNATURE_HEADER)
        ok = status == 200
        if self.verify_signatures:
            try:
                verify_detached(signature or "", raw, self.gateway_keys)
            except SignatureInvalid:
                self.bad_signatures += 1
                ok = False
        if status != 200:
            return False
        for source in orjson.loads(raw)["sources"]:
            tally[source["name"]] = tally.get(source["name"], 0) + source["calls"]
            ok = ok and source["status"] == "ok"
        return ok

    async def grant_consents(self, subjects: list[str], checks: tuple[str, ...], concurrency: int) -> int:
        """Record each subject's consent to this client's purpose through ``/v1/consents``, untimed."""
        began = time.perf_counter()
        until = (datetime.now(UTC) + timedelta(days=365)).isoformat()
        pending = iter(subjects)
        granted = 0

        async def worker() -> None:
            nonlocal granted
            for idcs in pending:
                body = orjson.dumps({"subject": {"idcs": idcs}, "grantee": self.client_id, "purpose": self.purpose,
                                     "checks": list(checks), "valid_until": until,
                                     "evidence": {"kind": "document", "id": "bench-signed-form"}})
                token = client_assertion(self.key, self.client_id, self.audience, "POST", CONSENT_PATH, body)
                async with self.session.post(self.base_url + CONSENT_PATH, data=body, headers={
                        "Content-Type": "application/json", "Authorization": "Bearer " + token}) as resp:
                    await resp.read()
                    if resp.status != 201:
                        raise RuntimeError(f"granting a consent failed with HTTP {resp.status}")
                granted += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(f"  recorded {granted:,} consents through {CONSENT_PATH} in {time.perf_counter() - began:.1f} s",
              flush=True)
        return granted


# ---------------------------------------------------------------- the closed-loop driver


@dataclass
class Phase:
    name: str
    done: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    cpu_self_s: float = 0.0
    cpu_sims_s: float = 0.0
    cpu_client_s: float = 0.0  # --client-process: the load generator's process (else its CPU is in cpu_self_s)
    cpu_others_s: float = 0.0  # what other processes on the machine used meanwhile
    latencies_ms: list[float] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


async def drive(name: str, work: WorkFn, start: int, count: int | None, duration_s: float | None,
                concurrency: int, sims_pid: int, keep_latencies: bool = True,
                on_progress: Callable[[Phase], None] | None = None) -> Phase:
    """``concurrency`` workers take request numbers ``start, start+1, ...`` until ``count`` or the deadline."""
    phase = Phase(name)
    end = None if count is None else start + count
    next_i = start
    began = time.perf_counter()
    deadline = None if duration_s is None else began + duration_s

    async def worker() -> None:
        nonlocal next_i
        while (end is None or next_i < end) and (deadline is None or time.perf_counter() < deadline):
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            try:
                ok = await work(i, phase.calls)
            except Exception as exc:
                ok = False
                if len(phase.errors) < 5:
                    phase.errors.append(f"{type(exc).__name__}: {exc}")
            if keep_latencies:
                phase.latencies_ms.append((time.perf_counter() - t0) * 1000)
            if ok:
                phase.done += 1
            else:
                phase.failed += 1
            if on_progress is not None:
                on_progress(phase)

    cpu0, sims0, all0 = time.process_time(), cpu_seconds(sims_pid), system_busy_seconds()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.elapsed_s = time.perf_counter() - began
    phase.cpu_self_s = time.process_time() - cpu0
    phase.cpu_sims_s = cpu_seconds(sims_pid) - sims0
    phase.cpu_others_s = max(0.0, system_busy_seconds() - all0 - phase.cpu_self_s - phase.cpu_sims_s)
    return phase


# ---------------------------------------------------------------- profiling (optional, never timed)

_PACKAGES = ("gateway", "connectors", "simulators", "bench", "aiohttp", "zeep", "lxml", "jwt", "cryptography",
             "jsonschema", "referencing", "structlog", "orjson", "multidict", "yarl", "tenacity", "asyncio",
             "sqlite3", "uuid", "json", "hashlib", "base64", "ssl", "selectors", "socket")


def _where(filename: str, lineno: int, function: str) -> str:
    """``package/module.py:line(function)`` without the machine's paths."""
    parts = Path(filename).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in _PACKAGES:
            return f"{'/'.join(parts[i:])}:{lineno}({function})"
    return f"{Path(filename).name or filename}:{lineno}({function})"


def _package(filename: str) -> str:
    parts = Path(filename).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in _PACKAGES:
            return parts[i]
    if filename.startswith("<") or filename == "~":
        return "builtins (C)"
    return Path(filename).stem


FunctionKey = tuple[str, int, str]


@dataclass
class Profile:
    """cProfile's numbers per verification (ms of own time, ms cumulative, calls)."""

    title: str
    verifications: int
    functions: dict[FunctionKey, tuple[float, float, float]]

    @property
    def total_ms(self) -> float:
        return sum(tt for tt, _, _ in self.functions.values())

    def by_package(self) -> dict[str, float]:
        packages: dict[str, float] = {}
        for (filename, _, _), (tt, _, _) in self.functions.items():
            packages[_package(filename)] = packages.get(_package(filename), 0.0) + tt
        return packages


def collect_profile(title: str, profiler: cProfile.Profile, verifications: int) -> Profile:
    raw: dict[FunctionKey, tuple[int, int, float, float, Any]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    per = max(verifications, 1)
    return Profile(title, verifications, {
        key: (tt * 1000 / per, ct * 1000 / per, ncalls / per) for key, (_, ncalls, tt, ct, _) in raw.items()})


def print_profile(profile: Profile, top: int) -> None:
    total = profile.total_ms or 1.0
    print(f"\n{profile.title}: {profile.total_ms:.2f} ms of profiled CPU per verification over "
          f"{profile.verifications:,} (cProfile inflates absolutes; read shares and differences)")
    print("  own time by package: " + ", ".join(
        f"{name} {ms / total:.0%}" for name, ms in sorted(profile.by_package().items(), key=lambda kv: -kv[1])[:12]))
    print(f"  {'own ms':>7} {'own %':>6} {'cum ms':>7} {'calls':>7}  function  (per verification)")
    for key, (tt, ct, calls) in sorted(profile.functions.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {tt:>7.3f} {tt / total:>6.1%} {ct:>7.3f} {calls:>7.1f}  {_where(*key)}")


def print_profile_delta(baseline: Profile, gateway: Profile, top: int) -> None:
    """Where the gateway's extra CPU goes: own time per verification, gateway pass minus baseline pass."""
    extra = gateway.total_ms - baseline.total_ms
    print(f"\nthe gateway's extra CPU per verification (profiled, gateway pass minus baseline pass): {extra:.2f} ms")
    base_pkg, gw_pkg = baseline.by_package(), gateway.by_package()
    deltas = {name: gw_pkg.get(name, 0.0) - base_pkg.get(name, 0.0) for name in set(base_pkg) | set(gw_pkg)}
    print("  by package: " + ", ".join(
        f"{name} {ms:+.2f}" for name, ms in sorted(deltas.items(), key=lambda kv: -kv[1])[:12]))
    rows = []
    for key in set(baseline.functions) | set(gateway.functions):
        tt_b, _, calls_b = baseline.functions.get(key, (0.0, 0.0, 0.0))
        tt_a, ct_a, calls_a = gateway.functions.get(key, (0.0, 0.0, 0.0))
        rows.append((tt_a - tt_b, ct_a, calls_a - calls_b, key))
    print(f"  {'+own ms':>8} {'cum ms':>7} {'+calls':>7}  function  (per verification)")
    for d_tt, ct_a, d_calls, key in sorted(rows, key=lambda r: -r[0])[:top]:
        print(f"  {d_tt:>+8.3f} {ct_a:>7.3f} {d_calls:>+7.1f}  {_where(*key)}")


def print_gateway_functions(gateway: Profile, top: int) -> None:
    """The gateway's own functions by cumulative time (children included), per verification."""
    rows = [(ct, calls, key) for key, (_, ct, calls) in gateway.functions.items()
            if _package(key[0]) == "gateway" and ct >= 0.005]
    print("\nthe gateway's own functions by cumulative CPU per verification (profiled; awaited time excluded; "
          "gateway/client.py is the load generator's side):")
    print(f"  {'cum ms':>7} {'calls':>7}  function")
    for ct, calls, key in sorted(rows, key=lambda r: -r[0])[:top]:
        print(f"  {ct:>7.3f} {calls:>7.1f}  {_where(*key)}")


async def profiled(title: str, run: Callable[[], Awaitable[Phase]]) -> tuple[Phase, Profile]:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        phase = await run()
    finally:
        profiler.disable()
    return phase, collect_profile(title, profiler, phase.done + phase.failed)


# ---------------------------------------------------------------- the run


@dataclass
class Options:
    households: int
    concurrency: int
    requests: int | None
    duration_s: float | None
    warmup: int
    memory_run: int
    memory_max_s: float
    rounds: int
    seed: str
    verify_signatures: bool
    profile: bool
    profile_requests: int
    log_level: str
    strict: bool
    consent: bool = False
    tracing: bool = False
    client_process: bool = False


@dataclass
class Results:
    warm_baseline: Phase | None = None
    warm_gateway: Phase | None = None
    rounds: list[tuple[Phase, Phase]] = field(default_factory=list)  # (baseline, gateway), in that order
    memory: list[tuple[int, int, int, int, float]] = field(default_factory=list)  # (%, done, rss, sims, s)
    memory_phase: Phase | None = None
    profile_phases: list[Phase] = field(default_factory=list)
    gateway_requests: int = 0
    consents_granted: int = 0  # requests to /v1/consents before timing (each one an access-log entry)

    def phases(self) -> list[Phase]:
        found = [self.warm_baseline, self.warm_gateway, self.memory_phase, *self.profile_phases]
        return [p for p in found if p is not None] + [p for pair in self.rounds for p in pair]


async def prime_simulators(baseline: Baseline, subjects: list[str], concurrency: int) -> None:
    """One civil-registry look-up per household, untimed, so the simulators' household cache is as warm for
    the baseline's first round as it is for the gateway's."""
    began = time.perf_counter()
    ctx = CallContext(baseline.session, baseline.sign, "prime", baseline.client_id, baseline.purpose)
    person = baseline.routes["person"]
    pending = iter(subjects)

    async def worker() -> None:
        for idcs in pending:
            with contextlib.suppress(ConnectorError):  # a failure shows up in the measured phases anyway
                await person.fetch(Query("person", {"idcs": idcs}), ctx)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(f"  primed the simulators' household cache with {len(subjects):,} households in "
          f"{time.perf_counter() - began:.1f} s", flush=True)


def _print_phase_line(phase: Phase) -> None:
    print(f"  {phase.name}: {phase.done + phase.failed:,} verifications in {phase.elapsed_s:.1f} s "
          f"({phase.rate:,.0f}/s){'' if not phase.failed else f', {phase.failed} FAILED'}", flush=True)
    for error in phase.errors:
        print(f"    ! {error}", flush=True)


async def run_phases(settings: Settings, opts: Options, subjects: list[str], sims: SimulatorProcess) -> Results:
    """Warmups, then ``rounds`` × (baseline, gateway) on the same households; then profile and memory runs."""
    results = Results()
    settings = settings.with_connector_urls(sims.urls)
    client_id, purpose = (CONSENT_CLIENT_ID, CONSENT_PURPOSE) if opts.consent else (CLIENT_ID, PURPOSE)
    checks = authorise(settings, client_id, purpose, None).checks  # what the gateway runs for this client
    gateway_key = load_gateway_key(settings)
    client_key = keys.load_or_create(dev_client_key_path(settings.state_dir, client_id))
    n = len(subjects)
    timed = opts.requests if opts.duration_s is None else None
    connectors = {c.name: build_connector(c, settings.root) for c in settings.connectors}

    async with contextlib.AsyncExitStack() as stack:
        # (b) the baseline: its own session and connectors, the gateway's plan, nothing else
        backend_session = await stack.enter_async_context(new_session())
        baseline = Baseline(connectors, backend_session,
                            OutboundSigner(gateway_key, settings.gateway_id, client_id, purpose), checks,
                            client_id, purpose, settings.checks)
        # (a) the real gateway (idle while the baseline runs) and its load generator
        gw = await stack.enter_async_context(gateway_running(settings, port=0))
        client_session = await stack.enter_async_context(aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)))
        load_gen = GatewayLoad(gw.url, client_session, client_key, settings.gateway_id, client_id, purpose)
        await load_gen.fetch_keys()
        if opts.consent:
            results.consents_granted = await load_gen.grant_consents(subjects, checks, opts.concurrency)
        remote = None
        if opts.client_process:  # the load generator in its own process, as a real client on another machine
            remote = await stack.enter_async_context(client_process(ClientSpec(
                gw.url, dev_client_key_path(settings.state_dir, client_id), settings.gateway_id, client_id, purpose,
                tuple(subjects))))

        async def baseline_work(i: int, tally: dict[str, int]) -> bool:
            return await baseline.verify(subjects[i % n], tally)

        async def gateway_work(i: int, tally: dict[str, int]) -> bool:
            return await load_gen.verify(subjects[i % n], f"BENCH-{i:08d}", tally)

        def phase(name: str, work: WorkFn, start: int, count: int | None, duration: float | None
                  ) -> Awaitable[Phase]:
            return drive(name, work, start, count, duration, opts.concurrency, sims.pid)

        def gateway_phase(name: str, start: int, count: int | None, duration: float | None,
                          verify_signatures: bool) -> Awaitable[Phase]:
            if remote is not None:
                return remote.run(PhaseOrder(name, start, count, duration, opts.concurrency, verify_signatures),
                                  sims.pid)
            load_gen.verify_signatures = verify_signatures
            return phase(name, gateway_work, start, count, duration)

        where = "in its own process" if remote is not None else "in this process"
        print(f"(b) baseline: direct backend calls; (a) the gateway at {gw.url}, its load generator {where}",
              flush=True)
        await prime_simulators(baseline, subjects[:SIMULATOR_CACHE], opts.concurrency)
        results.warm_baseline = await phase("(b) warmup", baseline_work, 0, opts.warmup, None)
        _print_phase_line(results.warm_baseline)
        # every warmup answer's signature is checked
        results.warm_gateway = await gateway_phase("(a) warmup", 0, opts.warmup, None, True)
        _print_phase_line(results.warm_gateway)
        for r in range(1, opts.rounds + 1):
            b = await phase(f"(b) round {r}", baseline_work, opts.warmup, timed, opts.duration_s)
            _print_phase_line(b)
            a = await gateway_phase(f"(a) round {r}", opts.warmup, timed, opts.duration_s, opts.verify_signatures)
            _print_phase_line(a)
            results.rounds.append((b, a))

        if opts.profile:
            b, baseline_profile = await profiled("(b) baseline profile", lambda: phase(
                "(b) profile", baseline_work, opts.warmup, opts.profile_requests, None))
            title = ("(a) gateway profile (the gateway alone: its load generator runs in its own process)"
                     if remote is not None else "(a) gateway profile (gateway + load generator, this process)")
            a, gateway_profile = await profiled(title, lambda: gateway_phase(
                "(a) profile", opts.warmup, opts.profile_requests, None, opts.verify_signatures))
            results.profile_phases += [b, a]
            print_profile(baseline_profile, 25)
            print_profile(gateway_profile, 30)
            print_profile_delta(baseline_profile, gateway_profile, 30)
            print_gateway_functions(gateway_profile, 30)
        if opts.memory_run:
            await memory_run(opts, results, gateway_work, sims.pid, remote)
        bad_signatures = load_gen.bad_signatures + (remote.bad_signatures if remote is not None else 0)
        if bad_signatures:
            print(f"  ! {bad_signatures} answers whose signature did not verify", flush=True)
        results.gateway_requests = (sum(p.done + p.failed for p in results.phases() if "(b)" not in p.name)
                                    + results.consents_granted)
    for connector in connectors.values():
        await connector.aclose()
    return results


async def memory_run(opts: Options, results: Results, work: WorkFn, sims_pid: int,
                     remote: ClientProcess | None = None) -> None:
    """``--memory-run``: RSS sampled every 10%; with ``--client-process``, the run is sent as ten parts of 10%,
    each sampled when it ends."""
    total = opts.memory_run
    marks = [math.ceil(total * k / 10) for k in range(1, 11)]
    began = time.perf_counter()
    print(f"\nmemory run: {total:,} verifications through the gateway, concurrency {opts.concurrency}, "
          f"RSS sampled every 10% (at most {opts.memory_max_s:.0f} s)", flush=True)

    last = {"t": began, "done": 0, "cpu": time.process_time(), "sims": cpu_seconds(sims_pid),
            "all": system_busy_seconds()}

    def sample(pct: int, done: int) -> None:
        now, cpu, sims, busy = time.perf_counter(), time.process_time(), cpu_seconds(sims_pid), system_busy_seconds()
        span = now - last["t"]
        results.memory.append((pct, done, rss_bytes(), rss_bytes(sims_pid), now - began))
        rate = (done - last["done"]) / span if span else 0.0
        others = max(0.0, busy - last["all"] - (cpu - last["cpu"]) - (sims - last["sims"]))
        share = others / (span * (os.cpu_count() or 1)) if span else 0.0
        last.update(t=now, done=done, cpu=cpu, sims=sims, all=busy)
        print(f"  {pct:>3}%  {done:>9,} verifications  {now - began:>7.1f} s  {rate:>6.0f}/s since the last  "
              f"gateway RSS {mib(results.memory[-1][2]):>10}  simulators RSS {mib(results.memory[-1][3]):>10}  "
              f"others {share:.0%}", flush=True)

    def on_progress(phase: Phase) -> None:
        finished = phase.done + phase.failed
        if marks and finished >= marks[0]:
            marks.pop(0)
            sample(10 * (10 - len(marks)), finished)

    sample(0, 0)
    if remote is not None:
        parts, sent, left_s = [], 0, opts.memory_max_s
        for mark in list(marks):
            part = await remote.run(PhaseOrder("(a) memory", opts.warmup + sent, mark - sent, left_s,
                                               opts.concurrency, opts.verify_signatures, keep_latencies=False),
                                    sims_pid)
            parts.append(part)
            sent += part.done + part.failed
            left_s -= part.elapsed_s
            sample(10 * len(parts), sent)
            if sent < mark or left_s <= 0:
                break
        results.memory_phase = merged("(a) memory", parts)
    else:
        results.memory_phase = await drive("(a) memory", work, opts.warmup, total, opts.memory_max_s,
                                           opts.concurrency, sims_pid, keep_latencies=False, on_progress=on_progress)
    if results.memory_phase.done + results.memory_phase.failed < total:
        print(f"  stopped at the {opts.memory_max_s:.0f} s bound", flush=True)
    for error in results.memory_phase.errors:
        print(f"    ! {error}", flush=True)


# ---------------------------------------------------------------- the report


def _calls_line(label: str, b: Phase | None, a: Phase | None, exact: bool) -> tuple[str, bool]:
    if b is None or a is None:
        return f"{label}: not measured", False
    if exact:
        same = b.calls == a.calls
        names = sorted(set(b.calls) | set(a.calls))
        detail = ", ".join(f"{k} {b.calls.get(k, 0):,}/{a.calls.get(k, 0):,}" for k in names)
        return f"{label}: {'identical' if same else 'DIFFERENT'} (baseline/gateway: {detail})", same
    per_b = b.total_calls / max(b.done + b.failed, 1)
    per_a = a.total_calls / max(a.done + a.failed, 1)
    return f"{label}: {per_b:.2f} vs {per_a:.2f} backend calls per verification (different households)", True


def merged(name: str, phases: list[Phase]) -> Phase:
    """Several rounds of one side as one phase: total rate, percentiles over every latency."""
    total = Phase(name)
    for p in phases:
        total.done += p.done
        total.failed += p.failed
        total.elapsed_s += p.elapsed_s
        total.cpu_self_s += p.cpu_self_s
        total.cpu_sims_s += p.cpu_sims_s
        total.cpu_client_s += p.cpu_client_s
        total.cpu_others_s += p.cpu_others_s
        total.latencies_ms += p.latencies_ms
        for k, v in p.calls.items():
            total.calls[k] = total.calls.get(k, 0) + v
    return total


def _row(label: str, phase: Phase) -> str:
    count = max(phase.done + phase.failed, 1)
    client = f"{phase.cpu_client_s * 1000 / count:.2f}" if phase.cpu_client_s else "-"
    cpu = f"{phase.cpu_self_s * 1000 / count:.2f} | {client} | {phase.cpu_sims_s * 1000 / count:.2f}"
    return (f"{label:<30}{phase.rate:>9.1f}{phase.percentile(0.5):>9.1f}{phase.percentile(0.9):>9.1f}"
            f"{phase.percentile(0.99):>9.1f}{max(phase.latencies_ms, default=float('nan')):>9.1f}"
            f"{phase.failed:>8}{phase.total_calls / count:>13.2f}{cpu:>38}{_others(phase):>8.0%}")


def _others(phase: Phase) -> float:
    """Share of the machine's cores used by other processes during the phase."""
    return phase.cpu_others_s / (phase.elapsed_s * (os.cpu_count() or 1)) if phase.elapsed_s else 0.0


def report(opts: Options, results: Results, access_log_rows: int | None) -> int:
    b = merged("baseline", [pair[0] for pair in results.rounds])
    a = merged("gateway", [pair[1] for pair in results.rounds])
    print("\n" + "=" * 123)
    print(f"{'':<30}{'verif/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'failed':>8}"
          f"{'calls/verif':>13}{'CPU ms/verif: bench | client | sims':>38}{'others':>8}")
    if len(results.rounds) > 1:
        for r, (rb, ra) in enumerate(results.rounds, 1):
            print(_row(f"  round {r}: (b) baseline", rb))
            print(_row(f"  round {r}: (a) gateway", ra))
    print(_row("(b) baseline, direct calls", b))
    print(_row("(a) through the gateway", a))

    ratios = sorted(ra.rate / rb.rate if rb.rate else 0.0 for rb, ra in results.rounds)
    p50s = sorted(ra.percentile(0.5) / rb.percentile(0.5) for rb, ra in results.rounds if rb.latencies_ms)
    ratio = statistics.median(ratios)
    p50_ratio = statistics.median(p50s) if p50s else float("nan")
    target = CONSENT_TARGET_RATIO if opts.consent else TARGET_RATIO
    verdict = "PASS" if ratio >= target else "BELOW TARGET"
    spread = f" (median of {len(ratios)} rounds; {ratios[0]:.2f}..{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    if opts.consent:
        print(f"\nconsent-based purpose {CONSENT_PURPOSE} as {CONSENT_CLIENT_ID}: every gateway request looked up "
              f"one of {results.consents_granted:,} recorded consents")
    print(f"\nthroughput ratio gateway/baseline: {ratio:.2f}{spread}  (target >= {target:.2f})  {verdict}")
    print(f"p50 latency ratio gateway/baseline: {p50_ratio:.2f}")

    disturbed = [p.name for pair in results.rounds for p in pair if _others(p) > 0.10]
    if disturbed:
        print(f"warning: other processes used more than 10% of the machine during {', '.join(disturbed)}: "
              "those numbers are disturbed; rerun on a quiet machine")
    line, same = _calls_line("backend calls, warmup", results.warm_baseline, results.warm_gateway, True)
    print(line)
    for r, (rb, ra) in enumerate(results.rounds, 1):
        line, same_round = _calls_line(f"backend calls, round {r}", rb, ra, opts.duration_s is None)
        print(line)
        same = same and same_round
    if access_log_rows is not None:
        print(f"access log: {access_log_rows:,} entries for {results.gateway_requests:,} gateway requests")

    if results.memory:
        print_memory(results)

    failures = sum(p.failed for p in results.phases())
    if failures or not same or (access_log_rows is not None and access_log_rows != results.gateway_requests):
        print("\nINVALID RUN: failed verifications, different backend plans or missing access-log entries "
              "(see above); the numbers do not compare like with like")
        return 1
    if opts.strict and ratio < target:
        return 1
    return 0


def print_memory(results: Results) -> None:
    print("\nmemory (RSS of the gateway's process; it also runs the load generator, unless --client-process):")
    print(f"  {'at':>5}{'verifications':>15}{'gateway RSS':>14}{'simulators RSS':>16}")
    for pct, done, rss, sims, _ in results.memory:
        print(f"  {pct:>4}%{done:>15,}{mib(rss):>14}{mib(sims):>16}")
    at_20 = next((s for s in results.memory if s[0] == 20), None)
    last = results.memory[-1]
    if at_20 is not None and last[0] > 20:
        growth = (last[2] - at_20[2]) / at_20[2]
        flat = "flat" if growth < 0.10 else "GROWING"
        print(f"  growth from the 20% mark to {last[0]}%: {growth:+.1%} ({mib(last[2] - at_20[2])})  -> {flat} "
              f"(flat = < 10%)")
    phase = results.memory_phase
    if phase is not None and phase.rate:
        print(f"  {phase.done + phase.failed:,} verifications in {phase.elapsed_s:.0f} s ({phase.rate:.0f}/s); "
              f"100,000 at this rate take {100_000 / phase.rate / 60:.1f} min")


def count_access_log(path: Path) -> int | None:
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM access_log").fetchone()[0])
    except sqlite3.Error:
        return None


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.verifications", description=__doc__.split("\n")[0])
    parser.add_argument("--households", type=int, default=1000, help="households sampled (default 1000)")
    parser.add_argument("--concurrency", type=int, default=16, help="verifications in flight (default 16)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--requests", type=int, default=None, help="timed verifications per phase (default 2000)")
    amount.add_argument("--duration", type=float, default=None, help="timed seconds per phase instead")
    parser.add_argument("--warmup", type=int, default=200, help="uncounted verifications per phase (default 200)")
    parser.add_argument("--memory-run", type=int, default=0, metavar="M",
                        help="then M verifications through the gateway, sampling its RSS (default 0: skip)")
    parser.add_argument("--memory-max-seconds", type=float, default=1800.0, help="bound on the memory run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate baseline and gateway this many times; the verdict takes the median ratio")
    parser.add_argument("--seed", default="bench", help="seed of the household sample (default 'bench')")
    parser.add_argument("--verify-signatures", action="store_true",
                        help="the load generator also verifies every timed answer's signature")
    parser.add_argument("--profile", action="store_true",
                        help="afterwards, one extra untimed pass per phase under cProfile, hot spots printed")
    parser.add_argument("--profile-requests", type=int, default=1000)
    parser.add_argument("--log-level", default="INFO", help="the gateway's JSON log level (default INFO, as served)")
    parser.add_argument("--strict", action="store_true",
                        help=f"exit 1 if the ratio is below its target ({TARGET_RATIO}, or {CONSENT_TARGET_RATIO} with "
                             "--consent)")
    parser.add_argument("--tracing", action="store_true",
                        help="the gateway exports OpenTelemetry traces (OTLP/HTTP) to a collector in its own process")
    parser.add_argument("--client-process", action="store_true",
                        help="the gateway's load generator runs in its own process (a client on another machine): "
                             "the benchmark process's CPU is then the gateway's alone")
    parser.add_argument("--consent", action="store_true",
                        help=f"query as {CONSENT_CLIENT_ID} for {CONSENT_PURPOSE}, a purpose resting on consent: each "
                             "sampled citizen's consent is recorded first, and every request looks it up")
    args = parser.parse_args(argv)
    if min(args.households, args.concurrency, args.rounds) < 1 or min(args.warmup, args.memory_run) < 0:
        parser.error("--households, --concurrency and --rounds must be positive; --warmup and --memory-run "
                     "not negative")
    requests = args.requests if args.requests is not None else (None if args.duration else 2000)
    return Options(args.households, args.concurrency, requests, args.duration, args.warmup, args.memory_run,
                   args.memory_max_seconds, args.rounds, args.seed, args.verify_signatures, args.profile,
                   args.profile_requests, args.log_level.upper(), args.strict, args.consent, args.tracing,
                   args.client_process)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="anss-bench-") as tmp:
        state_dir = Path(tmp)
        settings = bench_settings(state_dir)
        load_gateway_key(settings)  # generated now, so the simulators' process trusts it
        subjects = sample_households(settings, opts.households, opts.seed)
        sim = settings.simulators
        amount = (f"{opts.requests:,} timed verifications" if opts.duration_s is None
                  else f"{opts.duration_s:g} s timed")
        print(f"anss-gateway benchmark: {os.cpu_count()} CPUs; population {sim.households:,} households "
              f"(seed {sim.seed!r}), {len(subjects):,} sampled; per phase {opts.warmup} warmup + {amount}, "
              f"concurrency {opts.concurrency}", flush=True)
        busy = _busy()
        if busy:
            print(f"  warning: {busy}; other work on these cores skews both phases", flush=True)
        if len(subjects) > SIMULATOR_CACHE:
            print(f"  note: more households than the simulators cache ({SIMULATOR_CACHE}); the two phases may "
                  "see different cache hit rates", flush=True)
        with simulators_process(settings) as sims:
            print(f"simulators: process {sims.pid}, " + ", ".join(f"{k} {v}" for k, v in sims.urls.items()),
                  flush=True)
            # the gateway's JSON logs, configured as served, go to a file in the state directory
            with open(state_dir / "gateway.log", "w", encoding="utf-8") as log_sink, \
                    contextlib.redirect_stderr(log_sink), \
                    (otlp_sink() if opts.tracing else contextlib.nullcontext(None)) as collector:
                logs.configure(level=opts.log_level, json=True)
                results = asyncio.run(run_phases(settings, opts, subjects, sims))
                if collector is not None:
                    got = collector()
                    print(f"tracing on: the collector received {got['exports']:,} OTLP exports, "
                          f"{got['bytes']:,} bytes", flush=True)
        return report(opts, results, count_access_log(settings.audit_database))


if __name__ == "__main__":
    sys.exit(main())
