"""Mutual TLS with real certificates on real loopback connections: the gateway, the binding rule, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.client import GatewayClient
from gateway.config.settings import Settings, load
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path, load_signing_keys
from gateway.errors import Unauthenticated
from gateway.trust.tls import (
    MISMATCH_DETAIL,
    MISSING_DETAIL,
    check_binding,
    client_id_from_cert,
    client_id_from_peer,
    client_ssl_context,
    mtls_enabled,
    server_ssl_context,
)
from gateway.web.runner import RunningGateway, gateway_running
from simulators.population import Population
from simulators.servers import DEFAULT_PORTS, start_simulators
from tests.trust.pki import Issued, Pki, make_pki

ROOT = Path(__file__).resolve().parent.parent.parent
SEED = "trust-tests"
HOUSEHOLDS = 2_000


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def session_for(pki: Pki, cert: Issued | None) -> aiohttp.ClientSession:
    context = client_ssl_context(pki.ca, cert.cert if cert else None, cert.key if cert else None)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                 timeout=aiohttp.ClientTimeout(total=10))


# -- the real gateway over mutual TLS -------------------------------------------------------------------------


@dataclass
class TlsStack:
    settings: Settings
    gateway: RunningGateway
    population: Population
    pki: Pki

    def client(self, client_id: str, session: aiohttp.ClientSession) -> GatewayClient:
        key = keys.load_or_create(dev_client_key_path(self.settings.state_dir, client_id))
        return GatewayClient(self.gateway.url, client_id, key, self.settings.gateway_id, session=session)

    def fixture_idcs(self) -> str:
        return self.population.fixture("amo_tadamon").father.idcs


@pytest.fixture
async def tls_stack(tmp_path: Path, pki: Pki) -> AsyncIterator[TlsStack]:
    settings = load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state")})
    settings = replace(settings, connectors=tuple(replace(c, timeout_s=2.0) for c in settings.connectors))
    population = Population(SEED, HOUSEHOLDS)
    _active, published = load_signing_keys(settings)
    sims = await start_simulators(population, {k.kid: k.public for k in published})
    settings = settings.with_connector_urls(sims.urls)
    context = server_ssl_context(pki.server.cert, pki.server.key, pki.ca)
    try:
        async with gateway_running(settings, port=0, ssl_context=context) as gw:
            yield TlsStack(settings, gw, population, pki)
    finally:
        await sims.stop()


async def test_gateway_over_mtls_answers_the_client_its_certificate_names(tls_stack: TlsStack) -> None:
    assert tls_stack.gateway.url.startswith("https://")
    async with session_for(tls_stack.pki, tls_stack.pki.asd) as session:
        client = tls_stack.client("anss.asd", session)
        answer = await client.verify({"idcs": tls_stack.fixture_idcs()}, "asd.eligibility", "TLS-1", ["identity"])
    assert answer.status == 200, answer.body
    assert answer.signature_header is not None, "the answer's signature verifies over TLS too"
    assert answer.json()["checks"]["identity"]["status"] == "verified"


@pytest.mark.parametrize("who", ["none", "foreign"])
async def test_gateway_refuses_the_handshake_without_a_certificate_from_its_ca(tls_stack: TlsStack,
                                                                              who: str) -> None:
    cert = None if who == "none" else tls_stack.pki.foreign
    async with session_for(tls_stack.pki, cert) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(tls_stack.gateway.url + "/healthz") as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientError):
            await tls_stack.client("anss.asd", session).verify(
                {"idcs": tls_stack.fixture_idcs()}, "asd.eligibility", "TLS-2", ["identity"])


async def test_gateway_refuses_plain_http_on_its_tls_port(tls_stack: TlsStack) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(tls_stack.gateway.url.replace("https://", "http://") + "/healthz") as resp:
                await resp.read()


async def test_gateway_refuses_a_token_of_another_client_than_the_certificate(tls_stack: TlsStack) -> None:
    async with session_for(tls_stack.pki, tls_stack.pki.asd) as session:
        client = tls_stack.client("cnss.amo-tadamon", session)  # its own valid token, on anss.asd's connection
        answer = await client.verify({"idcs": tls_stack.fixture_idcs()}, "amo.tadamon.eligibility", "TLS-3",
                                     ["identity"])
    assert answer.status == 401, answer.body
    problem = answer.json()
    assert problem["code"] == "invalid_assertion" and problem["detail"] == MISMATCH_DETAIL
    assert answer.signature_header is not None


# -- check_binding on a real TLS connection, through a test-only route --------------------------------------------


async def whoami(request: web.Request) -> web.Response:
    claimed = request.query.get("client", "")
    peer = client_id_from_peer(request)
    try:
        check_binding(request, claimed)
    except Unauthenticated as exc:
        return web.json_response({"peer": peer, "code": exc.code, "detail": exc.detail}, status=exc.status)
    return web.json_response({"peer": peer, "mtls": mtls_enabled(request)})


@asynccontextmanager
async def serving(context: ssl.SSLContext | None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        yield f"{'https' if context else 'http'}://127.0.0.1:{runner.addresses[0][1]}/whoami"
    finally:
        await runner.cleanup()


async def ask(url: str, pki: Pki, cert: Issued | None, client: str) -> tuple[int, dict[str, Any]]:
    async with session_for(pki, cert) as session, session.get(url, params={"client": client}) as resp:
        return resp.status, await resp.json()


async def test_binding_accepts_the_client_named_by_its_certificate(pki: Pki) -> None:
    async with serving(server_ssl_context(pki.server.cert, pki.server.key, pki.ca)) as url:
        assert await ask(url, pki, pki.asd, "anss.asd") == (200, {"peer": "anss.asd", "mtls": True})
        assert await ask(url, pki, pki.tadamon, "cnss.amo-tadamon") == (
            200, {"peer": "cnss.amo-tadamon", "mtls": True})


async def test_binding_refuses_a_token_client_other_than_the_certificate(pki: Pki) -> None:
    async with serving(server_ssl_context(pki.server.cert, pki.server.key, pki.ca)) as url:
        status, body = await ask(url, pki, pki.asd, "cnss.amo-tadamon")
    assert status == 401
    assert body == {"peer": "anss.asd", "code": "invalid_assertion", "detail": MISMATCH_DETAIL}


async def test_binding_falls_back_to_the_subject_common_name(pki: Pki) -> None:
    async with serving(server_ssl_context(pki.server.cert, pki.server.key, pki.ca)) as url:
        assert await ask(url, pki, pki.cn_only, "anss.asd") == (200, {"peer": "anss.asd", "mtls": True})
        assert (await ask(url, pki, pki.cn_only, "cnss.amo-tadamon"))[0] == 401


async def test_binding_with_optional_client_certificates_requires_one_for_the_bound_request(pki: Pki) -> None:
    context = server_ssl_context(pki.server.cert, pki.server.key, pki.ca, require_client_cert=False)
    async with serving(context) as url:
        status, body = await ask(url, pki, None, "anss.asd")
        assert status == 401 and body == {"peer": None, "code": "invalid_assertion", "detail": MISSING_DETAIL}
        assert await ask(url, pki, pki.asd, "anss.asd") == (200, {"peer": "anss.asd", "mtls": True})
        with pytest.raises(aiohttp.ClientError):  # optional, but a certificate from elsewhere is still refused
            await ask(url, pki, pki.foreign, "anss.asd")


async def test_binding_is_a_no_op_without_client_verification(pki: Pki) -> None:
    async with serving(None) as url, aiohttp.ClientSession() as session, session.get(
            url, params={"client": "anss.asd"}) as resp:
        assert (resp.status, await resp.json()) == (200, {"peer": None, "mtls": False})
    server_only = server_ssl_context(pki.server.cert, pki.server.key, None, require_client_cert=False)
    async with serving(server_only) as url:
        assert await ask(url, pki, pki.asd, "cnss.amo-tadamon") == (200, {"peer": None, "mtls": False})


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_server_context_refuses_tls_1_1(pki: Pki) -> None:
    context = server_ssl_context(pki.server.cert, pki.server.key, pki.ca)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2 and context.verify_mode == ssl.CERT_REQUIRED
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca)
    old.load_cert_chain(pki.asd.cert, pki.asd.key)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    async with serving(context) as url, aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=old)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url) as resp:
                await resp.read()


def test_server_context_needs_a_client_ca_to_require_certificates(pki: Pki) -> None:
    with pytest.raises(ValueError, match="client CA"):
        server_ssl_context(pki.server.cert, pki.server.key, None)


def test_client_id_from_cert() -> None:
    def cert(*uris: str, cn: str | None = "fallback") -> dict[str, Any]:
        subject: list[tuple[tuple[str, str], ...]] = [(("organizationName", "x"),)]
        if cn is not None:
            subject.append((("commonName", cn),))
        return {"subject": tuple(subject),
                "subjectAltName": (*(("URI", u) for u in uris), ("DNS", "client.example"))}

    assert client_id_from_cert(cert("urn:anss:client:anss.asd")) == "anss.asd"
    assert client_id_from_cert(cert("https://example.org/x", "urn:anss:client:anss.asd")) == "anss.asd"
    assert client_id_from_cert(cert("urn:anss:client:a", "urn:anss:client:b")) is None, "ambiguous: no one"
    assert client_id_from_cert(cert("urn:anss:client:")) == "fallback"
    assert client_id_from_cert(cert()) == "fallback"
    assert client_id_from_cert(cert(cn=None)) is None
    assert client_id_from_cert(None) is None and client_id_from_cert({}) is None


# -- the command line: serve --tls-*, client verify --tls-* -------------------------------------------------------


def _free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports after it."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + size >= 65000:
            continue
        holders: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                holders.append(socket.socket())
                holders[-1].bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for holder in holders:
                holder.close()
    raise RuntimeError("no free port block")


def _https_get(url: str, context: ssl.SSLContext) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def test_cli_serves_mutual_tls_and_the_cli_client_calls_it(tmp_path: Path, pki: Pki) -> None:
    sims = len(DEFAULT_PORTS)  # the simulators take base, base + 1, ...; the gateway the port after them
    base = _free_port_block(sims + 1)
    env = {**os.environ, "ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state"), "ANSS_GATEWAY_PORT": str(base + sims),
           "ANSS_GATEWAY_SIMULATOR_BASE_PORT": str(base), "ANSS_GATEWAY_SIMULATOR_SEED": SEED,
           "ANSS_GATEWAY_TLS_CERT": str(pki.server.cert), "ANSS_GATEWAY_TLS_KEY": str(pki.server.key)}
    proc = subprocess.Popen(  # the certificate and key from the environment, the client CA as an option
        [sys.executable, "-m", "gateway.cli.main", "serve", "--with-simulators", "--tls-client-ca", str(pki.ca)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{base + sims}"
    try:
        with_cert = client_ssl_context(pki.ca, pki.asd.cert, pki.asd.key)
        deadline, ready = time.monotonic() + 30, None
        while time.monotonic() < deadline and ready is None:
            try:
                ready = _https_get(url + "/readyz", with_cert)
            except OSError:
                time.sleep(0.2)
        assert ready is not None and ready["status"] == "ready"
        with pytest.raises(OSError):
            _https_get(url + "/healthz", client_ssl_context(pki.ca))
        idcs = Population(SEED, 3_200_000).fixture("amo_tadamon").father.idcs
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "client", "verify", "--idcs", idcs, "--check", "identity",
             "--url", url, "--tls-ca", str(pki.ca), "--tls-cert", str(pki.asd.cert), "--tls-key", str(pki.asd.key)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "response signature valid" in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "PRIVATE KEY" not in err.decode()


def test_cli_serve_tls_needs_certificate_and_key(tmp_path: Path, pki: Pki) -> None:
    env = {**os.environ, "ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state")}
    for extra in (["--tls-cert", str(pki.server.cert)], ["--tls-client-ca", str(pki.ca)],
                  ["--tls-cert", str(pki.server.cert), "--tls-key", str(tmp_path / "missing.key")]):
        result = subprocess.run([sys.executable, "-m", "gateway.cli.main", "serve", *extra], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "configuration error" in result.stderr, (extra, result.stderr)
