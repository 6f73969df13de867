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
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp

from bench.client_process import ClientProcess, ClientSpec, PhaseOrder, client_process
from bench.driver import Phase, WorkFn, drive
from bench.measure import cpu_seconds, machine_busy, mib, rss_bytes, system_busy_seconds
from bench.profiling import print_gateway_functions, print_profile, print_profile_delta, profiled
from bench.sides import CLIENT_ID, CONSENT_CLIENT_ID, CONSENT_PURPOSE, PURPOSE, Baseline, GatewayLoad, new_session
from bench.spawned import SimulatorProcess, otlp_sink, simulators_process
from connectors.base import CallContext, ConnectorError, Query
from connectors.registry import build as build_connector
from gateway.config.settings import Settings, load
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path, load_gateway_key
from gateway.crypto.outbound import OutboundSigner
from gateway.policy.rights import authorise
from gateway.web import logs
from gateway.web.runner import gateway_running, settle_heap
from simulators.population import Population

TARGET_RATIO = 0.8  # issue 10 §7: at concurrency 16, median of 3 rounds, with metrics and breakers on
CONSENT_TARGET_RATIO = 0.7  # (--consent: fewer backend calls per verification, so the fixed cost weighs more)
SIMULATOR_CACHE = 4096  # the simulators' household cache (Population: lru_cache maxsize)


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
        settle_heap()  # as `serve` does once up; process-wide, so both sides run on the same settled heap
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
        total.cpu_loop_s += p.cpu_loop_s
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


def _loop_line(b: Phase, a: Phase) -> str:
    """Each side's event-loop thread, where its Python runs: CPU per verification and how busy it was. Both sides
    are bound by that one thread, so the throughput ratio is about (b's CPU / a's CPU) × (a's busy / b's busy):
    work the gateway does, and time its loop waits (for the GIL held by its other threads, or with every request
    waiting on an administration)."""
    def per(p: Phase) -> tuple[float, float]:
        return p.cpu_loop_s * 1000 / max(p.done + p.failed, 1), p.cpu_loop_s / p.elapsed_s if p.elapsed_s else 0.0

    (b_ms, b_busy), (a_ms, a_busy) = per(b), per(a)
    if not (a_ms and b_ms and b_busy):
        return "event-loop thread: not measured"
    return (f"event-loop thread, CPU ms/verif and busy: (b) {b_ms:.2f}, {b_busy:.0%}; (a) {a_ms:.2f}, {a_busy:.0%} "
            f"(CPU ratio b/a {b_ms / a_ms:.2f} x busy ratio a/b {a_busy / b_busy:.2f})")


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
    print(_loop_line(b, a))

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
        busy = machine_busy()
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
