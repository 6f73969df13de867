"""``--profile``: one extra, untimed pass per side under cProfile; hot spots, and where the gateway's extra CPU goes."""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.driver import Phase

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
