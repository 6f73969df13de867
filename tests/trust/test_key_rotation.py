"""Rotating the gateway's signing key without downtime: the key store, the CLI, a running gateway."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config.settings import Settings, load
from gateway.crypto import keys
from gateway.crypto.jws import SignatureInvalid, sign_detached, verify_detached
from gateway.crypto.keyring import (
    GatewaySigningKeys,
    gateway_key_dir,
    gateway_key_path,
    load_gateway_key,
    load_signing_keys,
)
from gateway.crypto.keys import PublicKey, SigningKey
from gateway.crypto.keystore import KeyStore, KeyStoreError
from gateway.web.runner import gateway_running

ROOT = Path(__file__).resolve().parent.parent.parent
BODY = b'{"request_id":"r1","checks":{}}'


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def by_kid(published: list[SigningKey]) -> dict[str, PublicKey]:
    return {k.kid: k.public for k in published}


def jwks_by_kid(document: dict[str, Any]) -> dict[str, PublicKey]:
    return {k["kid"]: keys.public_from_jwk(k) for k in document["keys"]}


def settings_for(state_dir: Path) -> Settings:
    return load(env={"ANSS_GATEWAY_STATE_DIR": str(state_dir)})


# -- the key store ---------------------------------------------------------------------------------------------


def test_first_load_creates_a_keyring_with_one_private_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    active, published = store.load()
    assert published == [active] and active.alg == "EdDSA"
    pem = tmp_path / "keys" / f"gateway-{active.kid}.pem"
    assert pem.stat().st_mode & 0o777 == 0o600
    manifest = json.loads((tmp_path / "keys" / "keyring.json").read_text())
    assert manifest["active"] == active.kid
    assert [(k["kid"], k["retired_at"]) for k in manifest["keys"]] == [(active.kid, None)]
    datetime.fromisoformat(manifest["keys"][0]["created_at"])
    assert KeyStore(tmp_path / "keys").load()[0].kid == active.kid, "stable across loads"


def test_the_legacy_dev_key_is_adopted(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    legacy = keys.load_or_create(gateway_key_path(tmp_path))  # what earlier versions generated
    active, published = load_signing_keys(settings)
    assert active.kid == legacy.kid and [k.kid for k in published] == [legacy.kid]
    assert load_gateway_key(settings).kid == legacy.kid
    new = KeyStore(gateway_key_dir(tmp_path)).rotate()
    assert {k.kid for k in load_signing_keys(settings)[1]} == {legacy.kid, new.kid}


def test_rotation_publishes_both_keys_within_the_overlap_and_old_answers_still_verify(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path, overlap_s=3600, clock=clock)
    old, _ = store.load()
    signed_before = sign_detached(old, BODY, "r1")

    rotation = store.rotate_detailed("ES256")
    new = rotation.key
    assert (rotation.previous, rotation.retired_at) == (old.kid, clock.now)
    assert rotation.previous_published_until == clock.now + timedelta(hours=1)
    active, published = store.load()
    assert active.kid == new.kid and new.alg == "ES256"
    assert [k.kid for k in published] == [new.kid, old.kid], "the active key first"
    assert verify_detached(signed_before, BODY, by_kid(published))["kid"] == old.kid
    assert verify_detached(sign_detached(active, BODY, "r2"), BODY, by_kid(published))["kid"] == new.kid
    record = {r["kid"]: r for r in json.loads((tmp_path / "keyring.json").read_text())["keys"]}
    assert record[new.kid]["retired_at"] is None and record[old.kid]["retired_at"] is not None

    clock.advance(3599)
    assert [k.kid for k in store.load()[1]] == [new.kid, old.kid]
    clock.advance(1)
    assert [k.kid for k in store.load()[1]] == [new.kid], "after the overlap the old kid is gone"
    with pytest.raises(SignatureInvalid, match="unknown kid"):
        verify_detached(signed_before, BODY, by_kid(store.load()[1]))
    assert (tmp_path / f"gateway-{old.kid}.pem").exists(), "retired private keys are kept, never published"


def test_two_rotations_in_a_row_publish_every_key_still_in_its_overlap(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path, overlap_s=600, clock=clock)
    first, _ = store.load()
    second = store.rotate()
    clock.advance(300)
    third = store.rotate()
    assert [k.kid for k in store.load()[1]] == [third.kid, second.kid, first.kid]
    clock.advance(301)
    assert [k.kid for k in store.load()[1]] == [third.kid, second.kid]


def test_reload_if_changed_follows_a_rotation_made_elsewhere(tmp_path: Path) -> None:
    clock = Clock()
    watching = KeyStore(tmp_path, overlap_s=60, clock=clock)
    old, _ = watching.load()
    assert watching.reload_if_changed(monotonic=10.0) is None, "nothing changed"

    new = KeyStore(tmp_path, overlap_s=60, clock=clock).rotate()  # another process: the CLI
    assert watching.reload_if_changed(monotonic=10.5) is None, "checks at most once per second"
    fresh = watching.reload_if_changed(monotonic=11.1)
    assert fresh is not None and fresh.active.kid == new.kid
    assert [k.kid for k in fresh.published] == [new.kid, old.kid]
    assert fresh.changes_at == clock.now + timedelta(seconds=60)
    assert watching.reload_if_changed(monotonic=12.2) is None

    clock.advance(61)  # the overlap ends: the published set changes although the file did not
    fresh = watching.reload_if_changed(monotonic=13.3)
    assert fresh is not None and [k.kid for k in fresh.published] == [new.kid] and fresh.changes_at is None


def test_a_broken_keyring_is_reported_and_the_current_keys_stay(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.load()
    (tmp_path / "keyring.json").write_text('{"active": "nope", "keys": []}')
    with pytest.raises(KeyStoreError, match=r"keyring\.json"):
        store.reload_if_changed(monotonic=100.0)


def test_a_key_file_that_does_not_match_its_kid_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    active, _ = store.load()
    (tmp_path / f"gateway-{active.kid}.pem").write_bytes(keys.private_pem(keys.generate()))
    with pytest.raises(KeyStoreError, match="holds the key"):
        KeyStore(tmp_path).load()


@dataclass
class Holder:
    signing_key: SigningKey
    published_keys: list[SigningKey]


async def test_kept_current_applies_a_rotation_to_the_running_gateway_state(tmp_path: Path) -> None:
    source = GatewaySigningKeys(settings_for(tmp_path), overlap_s=60)
    holder = Holder(*source.load())
    old = holder.signing_key
    async with source.kept_current(holder, interval_s=0.05):
        new = KeyStore(gateway_key_dir(tmp_path)).rotate()
        await wait_for(lambda: holder.signing_key.kid == new.kid)
    assert [k.kid for k in holder.published_keys] == [new.kid, old.kid]


async def test_kept_current_survives_a_broken_keyring(tmp_path: Path) -> None:
    source = GatewaySigningKeys(settings_for(tmp_path), overlap_s=60)
    holder = Holder(*source.load())
    old = holder.signing_key
    manifest = gateway_key_dir(tmp_path) / "keyring.json"
    good = manifest.read_bytes()
    async with source.kept_current(holder, interval_s=0.05):
        manifest.write_text("{half written")
        await asyncio.sleep(1.3)
        assert holder.signing_key.kid == old.kid, "a bad keyring never takes the gateway's keys away"
        manifest.write_bytes(good)
        new = KeyStore(gateway_key_dir(tmp_path)).rotate()
        await wait_for(lambda: holder.signing_key.kid == new.kid)


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_a_configured_key_file_is_used_as_is_with_its_previous_files(tmp_path: Path) -> None:
    current, previous = keys.generate("ES256"), keys.generate()
    (tmp_path / "current.pem").write_bytes(keys.private_pem(current))
    (tmp_path / "previous.pem").write_bytes(keys.private_pem(previous))
    settings = replace(settings_for(tmp_path / "state"), signing_key_file=tmp_path / "current.pem")
    active, published = load_signing_keys(settings)
    assert (active.kid, [k.kid for k in published]) == (current.kid, [current.kid])
    assert load_gateway_key(settings).kid == current.kid
    assert not (tmp_path / "state" / "keys" / "keyring.json").exists(), "no key store in production mode"
    # once settings carry `previous_signing_key_files` (see keyring.py), the old key stays published:
    object.__setattr__(settings, "previous_signing_key_files", (tmp_path / "previous.pem",))
    active, published = load_signing_keys(settings)
    assert (active.kid, [k.kid for k in published]) == (current.kid, [current.kid, previous.kid])


# -- the command line ------------------------------------------------------------------------------------------


def cli(state_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], cwd=ROOT,
                          env={**os.environ, "ANSS_GATEWAY_STATE_DIR": str(state_dir), **env},
                          capture_output=True, text=True, timeout=60)


def test_cli_rotate_then_jwks_publishes_both_kids(tmp_path: Path) -> None:
    first = cli(tmp_path, "keys", "jwks")
    assert first.returncode == 0, first.stderr
    [old] = [k["kid"] for k in json.loads(first.stdout)["keys"]]

    rotated = cli(tmp_path, "keys", "rotate", "--alg", "ES256")
    assert rotated.returncode == 0, rotated.stderr
    lines = dict(line.split(": ", 1) for line in rotated.stdout.splitlines())
    assert lines["old kid"] == old
    new = lines["new kid"].split()[0]
    assert new != old and lines["overlap"].startswith("1 day, 0:00:00")

    published = json.loads(cli(tmp_path, "keys", "jwks").stdout)["keys"]
    assert [k["kid"] for k in published] == [new, old]
    assert published[0]["alg"] == "ES256" and all("d" not in k for k in published)
    signed_by_old = sign_detached(KeyStore(tmp_path / "keys").load()[1][1], BODY, "r1")
    assert verify_detached(signed_by_old, BODY, jwks_by_kid({"keys": published}))["kid"] == old


def test_cli_rotate_refuses_a_configured_key_file(tmp_path: Path) -> None:
    (tmp_path / "signing.pem").write_bytes(keys.private_pem(keys.generate()))
    result = cli(tmp_path / "state", "keys", "rotate", ANSS_GATEWAY_SIGNING_KEY_FILE=str(tmp_path / "signing.pem"))
    assert result.returncode == 2 and "previous_signing_key_files" in result.stderr


ROTATOR = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from gateway.crypto.keystore import KeyStore
    directory, start, count = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    time.sleep(max(0.0, start - time.time()))
    store = KeyStore(directory)
    for _ in range(count):
        print(store.rotate().kid, flush=True)
""")


def test_concurrent_rotations_from_two_processes_leave_a_consistent_keyring(tmp_path: Path) -> None:
    directory, count = tmp_path / "keys", 8
    start = time.time() + 1.0  # both start at once, on an empty directory: creation races too
    procs = [subprocess.Popen([sys.executable, "-c", ROTATOR, str(directory), str(start), str(count)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _out, err in outputs]
    made = [kid for out, _err in outputs for kid in out.split()]
    assert len(set(made)) == 2 * count

    manifest = json.loads((directory / "keyring.json").read_text())
    kids = [k["kid"] for k in manifest["keys"]]
    assert len(kids) == len(set(kids)) == 2 * count + 1, "every rotation recorded once, plus the first key"
    assert set(made) < set(kids)
    assert [k["kid"] for k in manifest["keys"] if k["retired_at"] is None] == [manifest["active"]]
    assert manifest["active"] in made
    for kid in kids:
        assert keys.load_private_pem(directory / f"gateway-{kid}.pem").kid == kid
    assert not list(directory.glob("*.tmp")), "no temporary file left behind"
    active, published = KeyStore(directory).load()
    assert active.kid == manifest["active"] and len(published) == len(kids)


# -- a running gateway -----------------------------------------------------------------------------------------


async def fetch_jwks(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/.well-known/jwks.json") as resp:
        document: dict[str, Any] = await resp.json(content_type=None)
        return document


async def signed_healthz(session: aiohttp.ClientSession, url: str) -> tuple[bytes, str]:
    async with session.get(url + "/healthz") as resp:
        return await resp.read(), resp.headers["X-JWS-Signature"]


async def test_a_gateway_started_after_a_rotation_signs_with_the_new_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = KeyStore(gateway_key_dir(tmp_path))
    store.load()
    new = store.rotate()
    async with gateway_running(settings, port=0) as gw, aiohttp.ClientSession() as session:
        body, token = await signed_healthz(session, gw.url)
        jwks = await fetch_jwks(session, gw.url)
    assert verify_detached(token, body, jwks_by_kid(jwks))["kid"] == new.kid


async def test_a_running_gateway_follows_a_rotation_without_restart(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with gateway_running(settings, port=0) as gw, aiohttp.ClientSession() as session:
        old_body, old_token = await signed_healthz(session, gw.url)
        [old] = [k["kid"] for k in (await fetch_jwks(session, gw.url))["keys"]]

        rotated = await asyncio.to_thread(cli, tmp_path, "keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        new = KeyStore(gateway_key_dir(tmp_path)).load()[0].kid

        deadline = time.monotonic() + 5
        while True:
            jwks = await fetch_jwks(session, gw.url)
            if [k["kid"] for k in jwks["keys"]] == [new, old] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert [k["kid"] for k in jwks["keys"]] == [new, old], "both kids are published within the overlap"
        assert verify_detached(old_token, old_body, jwks_by_kid(jwks))["kid"] == old
        body, token = await signed_healthz(session, gw.url)
        assert verify_detached(token, body, jwks_by_kid(jwks))["kid"] == new, "new answers use the new key"
