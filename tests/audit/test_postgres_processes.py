"""Two real gateway processes (``anss-gateway serve``) on one PostgreSQL log, under concurrent load.

Both processes are configured for the same schema (``[storage] backend = "postgres"``, the DSN in
``ANSS_GATEWAY_DATABASE_DSN``), share one state directory (keys, pseudonym key) and the same four simulators,
which run in the test. The test sends a few hundred signed requests split across both — answered ones and
refused ones — then stops the processes one after the other and checks that the log:

* holds every request exactly once: the ``X-Request-Id`` of every answer is the ``request_id`` of exactly one
  entry, and nothing else is there (no gap, no duplicate);
* verifies (``verify()`` recomputes the tree and every signed head against the gateway's keys), its tree heads
  are consistent with each other (RFC 9162 consistency proofs), and the last one covers the whole log;
* had its heads signed during the load by one process only: the elected sequencer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from gateway.audit import Pseudonymiser, tree_head_keys
from gateway.audit import merkle as m
from gateway.audit.postgres.store import PostgresAccessLog
from gateway.client import Answer, GatewayClient
from gateway.config.settings import DSN_ENV, Settings, load
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path, load_gateway_key
from gateway.stores.postgres import PostgresTarget
from simulators.population import FIXTURE_NAMES, Population
from simulators.servers import RunningSimulators, start_simulators
from tests.audit.pg_support import fresh_schema_async
from tests.gateway.conftest import HOUSEHOLDS, SEED

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 320
IN_FLIGHT = 24
CLIENT = "anss.asd"


def set_option(text: str, table: str, key: str, value: str) -> str:
    """``key = value`` in ``[table]`` of a TOML text (the key's existing line, else a new one)."""
    start = text.index(f"[{table}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    body = text[start:end]
    line = re.compile(rf"^#?\s*{re.escape(key)}\s*=.*$", re.M)
    body = line.sub(f"{key} = {value}", body, count=1) if line.search(body) else body + f"\n{key} = {value}\n"
    return text[:start] + body + text[end:]


def configure(tmp_path: Path, target: PostgresTarget) -> Path:
    """A copy of config/ for the two processes: the shared schema, heads every second or 40 entries, and rate
    limits out of the way (the load is the test's, not a client's abuse)."""
    config = tmp_path / "config"
    for path in (ROOT / "config").rglob("*.toml"):
        copy = config / path.relative_to(ROOT / "config")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    gateway = config / "gateway.toml"
    text = gateway.read_text(encoding="utf-8")
    for table, key, value in (("storage", "backend", '"postgres"'), ("storage", "schema", f'"{target.schema}"'),
                              ("audit", "tree_head_interval_s", "1"), ("audit", "tree_head_max_entries", "40"),
                              ("rate_limits", "rate_per_s", "100000"), ("rate_limits", "burst", "100000")):
        text = set_option(text, table, key, value)
    gateway.write_text(text, encoding="utf-8")
    return config


@dataclass
class GatewayProcess:
    name: str
    process: asyncio.subprocess.Process
    url: str = ""
    log: list[dict[str, object]] = field(default_factory=list)  # its structured log lines (stderr)
    reader: asyncio.Task[None] | None = None

    async def read_log(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                self.log.append(json.loads(raw))
            except ValueError:
                self.log.append({"event": "text", "line": raw.decode(errors="replace")})

    def signed_sizes(self) -> list[int]:
        return [int(str(e["tree_size"])) for e in self.log if e.get("event") == "tree_head_signed"]

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 60)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 10)
        return code


@asynccontextmanager
async def gateway_process(name: str, config: Path, env: dict[str, str]) -> AsyncIterator[GatewayProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "--config", str(config), "serve", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    running = GatewayProcess(name, process)
    running.reader = asyncio.create_task(running.read_log())
    try:
        assert process.stdout is not None
        while not running.url:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            if not line:
                await asyncio.sleep(0.2)
                pytest.fail(f"gateway {name} exited before listening: {running.log[-5:]}")
            if line.startswith("gateway listening on "):
                running.url = line.split()[-1]
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@dataclass(frozen=True)
class Sent:
    kind: str  # answered, forbidden, unknown
    answer: Answer


async def load_both(urls: list[str], settings: Settings, population: Population) -> list[Sent]:
    """``REQUESTS`` signed requests, alternating between the gateways, ``IN_FLIGHT`` at a time: half answered,
    a quarter refused for a purpose the client has no right to, a quarter for a subject nobody knows."""
    key = keys.load_or_create(dev_client_key_path(settings.state_dir, CLIENT))
    people = [population.fixture(name).father.idcs for name in FIXTURE_NAMES]
    unknown = population.unknown_idcs()
    gate = asyncio.Semaphore(IN_FLIGHT)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        clients = [GatewayClient(url, CLIENT, key, settings.gateway_id, session=session) for url in urls]

        async def one(i: int) -> Sent:
            client = clients[i % len(clients)]
            async with gate:
                if i % 4 == 2:
                    return Sent("forbidden", await client.verify({"idcs": people[i % len(people)]},
                                                                 "partner.social-housing", f"LOAD-{i}", ["identity"]))
                if i % 4 == 3:
                    return Sent("unknown", await client.verify({"idcs": unknown}, "asd.eligibility", f"LOAD-{i}",
                                                               ["identity"]))
                return Sent("answered", await client.verify({"idcs": people[i % len(people)]}, "asd.eligibility",
                                                            f"LOAD-{i}", ["identity"]))

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


async def test_two_gateway_processes_under_load_keep_one_log_with_every_request_once(tmp_path: Path) -> None:
    async with fresh_schema_async() as target:
        config = configure(tmp_path, target)
        environment = {"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state"), DSN_ENV: target.dsn,
                       "ANSS_GATEWAY_PORT": "0"}
        settings = load(config, env=environment)
        assert (settings.storage_backend, settings.database) == ("postgres", target)
        async with AsyncExitStack() as stack:
            # what both processes share, made once before they start: keys, pseudonym key, simulators
            gateway_key = load_gateway_key(settings)
            Pseudonymiser.load(settings.pseudonym_key_file, settings.state_dir)
            keys.load_or_create(dev_client_key_path(settings.state_dir, CLIENT))
            population = Population(SEED, HOUSEHOLDS)
            sims: RunningSimulators = await start_simulators(population, {gateway_key.kid: gateway_key.public})
            stack.push_async_callback(sims.stop)
            env = {**_inherited(), **environment,
                   **{f"ANSS_GATEWAY_CONNECTOR_{name.upper()}_URL": url for name, url in sims.urls.items()}}
            first = await stack.enter_async_context(gateway_process("first", config, env))
            second = await stack.enter_async_context(gateway_process("second", config, env))

            sent = await load_both([first.url, second.url], settings, population)

            signers_during_load = {p.name for p in (first, second) if p.signed_sizes()}
            assert await first.stop() == 0
            assert await second.stop() == 0

        statuses = Counter((s.kind, s.answer.status) for s in sent)
        assert statuses == {("answered", 200): REQUESTS // 2, ("forbidden", 403): REQUESTS // 4,
                            ("unknown", 404): REQUESTS // 4}, statuses
        assert all(s.answer.signature_header is not None for s in sent), "every answer signed by the gateway"
        request_ids = [s.answer.headers["X-Request-Id"] for s in sent]
        assert len(set(request_ids)) == REQUESTS
        assert len(signers_during_load) == 1, f"one elected sequencer signed during the load: {signers_during_load}"

        store = PostgresAccessLog(target)
        await store.open()
        try:
            count = await store.count()
            entries = [json.loads(e) for e in await store.entries(0, count) if e is not None]
            assert count == len(entries) == REQUESTS, "no gap, nothing pruned, nothing else logged"
            assert Counter(e["request_id"] for e in entries) == Counter(request_ids), "every request exactly once"
            logged = {e["request_id"]: e["status"] for e in entries}
            assert all(logged[s.answer.headers["X-Request-Id"]] == s.answer.status for s in sent), \
                "each entry records the answer its request got"
            assert await store.verify(tree_head_keys(settings)) is None, "the tree and every signed head verify"
            heads = await _all_heads(store, count)
            # how many heads the cadence yields depends on scheduling (a loaded machine signs fewer, larger ones);
            # what must hold is a head during the load and one over the whole log at the end
            assert len(heads) >= 2 and heads[0].head.tree_size < count, \
                f"a head during the load, and one at the end: {[h.head.tree_size for h in heads]}"
            assert heads[-1].head.tree_size == count, "the last process to stop signed the whole log"
            for old, new in itertools.pairwise(heads):
                proof = await store.consistency_proof(old.head.tree_size, new.head.tree_size)
                assert m.verify_consistency(old.head.tree_size, new.head.tree_size, old.head.root_hash,
                                            new.head.root_hash, proof), (old.head.tree_size, new.head.tree_size)
        finally:
            await store.close()


async def _all_heads(store: PostgresAccessLog, count: int) -> list[m.SignedTreeHead]:
    found = [await store.tree_head(size) for size in range(count + 1)]
    return [head for head in found if head is not None]


def _inherited() -> dict[str, str]:
    """The test's environment without any gateway setting (the processes get theirs explicitly)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANSS_GATEWAY_")}
