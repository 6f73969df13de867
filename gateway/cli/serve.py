"""``serve``, ``simulate``, ``demo``, ``fixtures``: run the gateway, the simulated administrations, the demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
from pathlib import Path

from gateway.cli.common import TLS_ENV, load_settings
from gateway.config.settings import ConfigError
from gateway.web import logs


def _server_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server TLS context from ``--tls-*`` (or their variables); ``None`` for plain HTTP."""
    from gateway.trust.tls import server_ssl_context

    cert, key, client_ca = args.tls_cert, args.tls_key, args.tls_client_ca
    if not (cert or key or client_ca):
        return None
    if not cert or not key:
        raise ConfigError("TLS needs both --tls-cert and --tls-key (ANSS_GATEWAY_TLS_CERT, ANSS_GATEWAY_TLS_KEY)")
    try:
        return server_ssl_context(Path(cert), Path(key), Path(client_ca) if client_ca else None,
                                  require_client_cert=bool(client_ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS: cannot load the certificate, key or client CA: {exc}") from exc


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.web.runner import serve

    settings = load_settings(args)
    ssl_context = _server_tls(args)
    logs.configure(json=True)
    asyncio.run(serve(settings, with_simulators=args.with_simulators, ssl_context=ssl_context))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.web.runner import simulate

    logs.configure(json=True)
    asyncio.run(simulate(load_settings(args)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import run_demo

    logs.configure(level="WARNING", json=True)
    return asyncio.run(run_demo(load_settings(args), as_json=args.json))


def cmd_fixtures(args: argparse.Namespace) -> int:
    from simulators.population import FIXTURE_NAMES, Population

    settings = load_settings(args)
    population = Population(settings.simulators.seed, settings.simulators.households)
    for name in FIXTURE_NAMES:
        household = population.fixture(name)
        print(f"{name:<20} father idcs={household.father.idcs} cin={household.father.cin}")
    print(f"{'unknown_identifier':<20} idcs={population.unknown_idcs()}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serve", help="run the gateway", description=(
        "Run the gateway. Plain HTTP unless --tls-cert/--tls-key are given; with --tls-client-ca too, "
        "mutual TLS: every client must present a certificate from that CA naming it (SAN URI "
        "urn:anss:client:<client-id>, else the subject CN), and it must match the client's token."))
    s.add_argument("--with-simulators", action="store_true", help="also run the five simulators (development)")
    s.add_argument("--tls-cert", default=os.environ.get(TLS_ENV["tls_cert"]),
                   help="server certificate chain (PEM); env ANSS_GATEWAY_TLS_CERT")
    s.add_argument("--tls-key", default=os.environ.get(TLS_ENV["tls_key"]),
                   help="server private key (PEM); env ANSS_GATEWAY_TLS_KEY")
    s.add_argument("--tls-client-ca", default=os.environ.get(TLS_ENV["tls_client_ca"]),
                   help="CA bundle (PEM) for client certificates: enables and requires mutual TLS; "
                        "env ANSS_GATEWAY_TLS_CLIENT_CA")
    s.set_defaults(func=cmd_serve)
    sub.add_parser("simulate", help="run the five administration simulators").set_defaults(func=cmd_simulate)
    d = sub.add_parser("demo", help="verify the fixture households end to end")
    d.add_argument("--json", action="store_true", help="one JSON object per verification")
    d.set_defaults(func=cmd_demo)
    sub.add_parser("fixtures", help="print the fixture households' identifiers").set_defaults(func=cmd_fixtures)
