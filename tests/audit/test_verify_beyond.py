"""`audit verify` beyond the recomputation, piece by piece: the cadence rule (pure), the configured witnesses, a
witness that cannot be reached or does not verify, a JWKS fetched from a URL, and the options' mistakes.
The tamperings themselves are in ``test_tamperings.py``; here the log is the same production-configured one,
on SQLite (the backend plays no part in these checks: ``test_tamperings`` runs both)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import checkpoint as cp
from gateway.audit.cadence import Cadence, entry_time, late_heads
from gateway.audit.merkle import TreeHead
from gateway.audit.witness.client import WitnessClient, WitnessEndpoint
from gateway.audit.witness.service import RunningWitness
from gateway.crypto import keys
from tests.audit.tamper_support import WITNESS, ProductionLog, Tamperer, later, record, verify
from tests.config_support import config_with

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
CADENCE = Cadence(interval_s=60, max_entries=100, slack_s=30)


def head(size: int, at: float) -> TreeHead:
    return TreeHead(size, bytes(32), int(at * 1000), "anss-gateway.access")


@pytest.mark.parametrize(("count", "latest", "first", "nth", "late"), [
    (0, None, None, None, False),                         # an empty log
    (5, None, NOW - 29, None, False),                     # the first head is signed at once: within the slack
    (5, None, NOW - 31, None, True),                      # ... not any later
    (5, None, None, None, True),                          # entries without a head or a readable time
    (10, head(10, NOW - 3600), None, None, False),        # nothing unsigned
    (12, head(10, NOW - 89), NOW - 200, None, False),     # due 60 s after the head, plus 30 s slack
    (12, head(10, NOW - 91), NOW - 200, None, True),
    (12, head(10, NOW - 3600), NOW - 29, None, False),    # the first unsigned entry is new: due at once
    (12, head(10, NOW - 3600), NOW - 31, None, True),
    (200, head(10, NOW - 50), NOW - 49, NOW - 35, True),  # the 100th unsigned entry 35 s ago: due then,
    (200, head(10, NOW - 50), NOW - 49, NOW - 25, False), # not 60 s after the head
])
def test_the_cadence_rule(count: int, latest: TreeHead | None, first: float | None, nth: float | None,
                          late: bool) -> None:
    found = late_heads(count, latest, first, CADENCE, NOW, at_max_entries=nth)
    assert (found is not None) == late, found
    if found and latest is None:
        assert f"{count} entries and no signed tree head" in found
    elif found:
        assert f"the latest signed tree head (size {latest.tree_size if latest else 0}" in found
        assert f"{count - (latest.tree_size if latest else 0)} entries follow it" in found


def test_entry_times_are_read_from_the_entry() -> None:
    assert entry_time(record(0).canonical()) == datetime(2026, 11, 23, 8, 0, tzinfo=UTC).timestamp()
    assert entry_time(None) is None and entry_time(b"not json") is None and entry_time(b"{}") is None


@pytest.fixture
async def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[ProductionLog,
                                                                                         RunningWitness]]:
    log = ProductionLog(tmp_path / "gateway")
    for variable, value in log.environment.items():
        monkeypatch.setenv(variable, value)
    async with log.witness() as witness, aiohttp.ClientSession() as session:
        await log.build(WitnessClient(session, [WitnessEndpoint(witness.url, witness.witness.vkey)], 1))
        yield log, witness


async def test_the_configured_witnesses_are_asked(built: tuple[ProductionLog, RunningWitness], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log, witness = built
    config = config_with(tmp_path, "[audit.anomalies]", f'[[audit.witnesses]]\nurl = "{witness.url}"\n'
                                                        f'vkey = "{witness.witness.vkey.encode()}"\n\n'
                                                        "[audit.anomalies]", "gateway.toml")
    monkeypatch.setenv("ANSS_GATEWAY_CONFIG", str(config))
    code, out = await verify(capsys)
    assert code == 0 and f"agrees with the checkpoint cosigned by witness {WITNESS}: size 150" in out, out
    Tamperer(log.settings).truncate(140, heads_above=True)
    log.high_water.unlink()
    log.archive.unlink()
    code, out = await verify(capsys)
    assert code == 1 and f"fewer than the 150 of the checkpoint cosigned by witness {WITNESS}" in out, out
    code, out = await verify(capsys, "--no-witnesses")  # not asked: nothing else outside the database is left
    assert code == 0, out


async def test_a_witness_that_cannot_be_asked_or_does_not_verify(built: tuple[ProductionLog, RunningWitness],
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 unused_tcp_port: int) -> None:
    _, witness = built
    code, out = await verify(capsys, "--witness", f"http://127.0.0.1:{unused_tcp_port}", witness.witness.vkey.encode())
    assert code == 2 and f"witness {WITNESS} at http://127.0.0.1:{unused_tcp_port} cannot be reached" in out, out
    impostor = cp.verifier_key(WITNESS, Ed25519PrivateKey.generate(), cp.COSIGNATURE_V1)
    code, out = await verify(capsys, "--witness", witness.url, impostor.encode())
    assert code == 2 and "checkpoint does not verify: no cosignature by its configured key" in out, out
    code, out = await verify(capsys, "--witness", witness.url, "not a key")
    assert code == 2 and "--witness" in out, out


async def test_options_mistakes_are_one_line(built: tuple[ProductionLog, RunningWitness],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await verify(capsys, "--now", "2026-12-01T12:00:00")
    assert code == 2 and "give a time zone" in out, out
    code, out = await verify(capsys, "--now", "yesterday")
    assert code == 2, out
    code, out = await verify(capsys, "--now", later(0), "--slack-s", "0")  # 10 entries, head 150 just signed
    assert code == 0, out


async def test_heads_of_a_key_retired_from_the_configuration_verify_with_a_jwks_url(
        built: tuple[ProductionLog, RunningWitness], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    log, _ = built
    new = tmp_path / "secrets" / "new.pem"
    keys.load_or_create(new)
    monkeypatch.setenv("ANSS_GATEWAY_SIGNING_KEY_FILE", str(new))  # rotated; the old file no longer configured
    out = (await verify(capsys))[1]
    assert out.startswith("access log BROKEN at entry 0: ") and "unknown kid" in out, out
    jwks = {"keys": [keys.public_jwk(log.key.public) | {"kid": log.key.kid}]}

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        code, out = await verify(capsys, "--jwks", f"http://{host}:{port}/.well-known/jwks.json")
        assert code == 0 and "verified against 2 known keys" in out, out
        code, out = await verify(capsys, "--jwks", f"http://{host}:{port}/missing")
        assert code == 2 and "HTTP 404" in out, out
    finally:
        await runner.cleanup()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks), encoding="utf-8")
    assert (await verify(capsys, "--jwks", str(path)))[0] == 0
