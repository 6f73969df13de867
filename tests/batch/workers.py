"""Real ``anss-gateway worker`` processes for the procrastinate suites and ``bench/batches.py``.

A worker is a subprocess of this interpreter running ``gateway.cli.main worker`` with the environment of the
gateway under test: its state directory (keys, pseudonym key), its PostgreSQL schema, the simulators' URLs and a
copy of ``config/`` whose ``[batches]`` table holds the values given (short heartbeats for tests). Its JSON log
goes to a file. ``kill()`` sends SIGKILL — the process dies mid-chunk, without a word to anyone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from gateway.config.settings import ROOT
from gateway.stores.postgres import PostgresTarget


def config_with_batches(directory: Path, values: Mapping[str, Any]) -> Path:
    """A copy of config/ in ``directory`` with ``[batches]`` keys set to ``values``."""
    target = directory / "config"
    shutil.copytree(ROOT / "config", target)
    path = target / "gateway.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index("\n[batches]\n")
    end = text.index("\n[", start + 1)
    section = text[start:end]
    for key, value in values.items():
        literal = ("true" if value else "false") if isinstance(value, bool) else (
            f'"{value}"' if isinstance(value, str) else str(value))
        section, found = re.subn(rf"^{key} = [^#\n]*", f"{key} = {literal} ", section, flags=re.M)
        if not found:
            section += f"\n{key} = {literal}"
    path.write_text(text[:start] + section + text[end:], encoding="utf-8")
    return target


def worker_env(config_dir: Path, state_dir: Path, target: PostgresTarget, urls: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSS_GATEWAY_")}
    env.update({"ANSS_GATEWAY_CONFIG": str(config_dir), "ANSS_GATEWAY_STATE_DIR": str(state_dir),
                "ANSS_GATEWAY_STORAGE_BACKEND": "postgres", "ANSS_GATEWAY_DATABASE_DSN": target.dsn,
                "ANSS_GATEWAY_DATABASE_SCHEMA": target.schema, "ANSS_GATEWAY_BATCH_ENGINE": "procrastinate"})
    for name, url in urls.items():
        env[f"ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL"] = url
    return env


@dataclass
class Workers:
    """Worker processes started with ``env``; every one still alive is killed by ``stop_all``."""

    env: dict[str, str]
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "worker", *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self, timeout_s: float = 30.0) -> list[int | None]:
        """SIGTERM to each (a drain), SIGKILL past ``timeout_s``; their exit codes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return [proc.returncode for proc in self.procs]


def owner_pid(runner: str | None) -> int | None:
    """The process id in a worker's name (``host-pid-random``)."""
    match = re.search(r"-(\d+)-[0-9a-f]{8}$", runner or "")
    return int(match.group(1)) if match else None


def query(target: PostgresTarget, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``statement`` in the target's schema (the tests' and the bench's own look at the tables)."""
    with psycopg.connect(target.dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(target.schema)))
        return conn.execute(statement, args).fetchall()  # type: ignore[arg-type]  # the tests' own SQL
