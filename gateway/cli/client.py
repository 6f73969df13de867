"""``client verify`` and ``client call``: call a running gateway as a configured client, signing with its key."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from pathlib import Path

import orjson

from gateway.cli.common import load_settings
from gateway.config.settings import ConfigError
from gateway.crypto import keys


def cmd_client_verify(args: argparse.Namespace) -> int:
    import aiohttp

    from gateway.client import GatewayClient
    from gateway.crypto.keyring import dev_client_key_path

    settings = load_settings(args)
    key_path = Path(args.key) if args.key else dev_client_key_path(settings.state_dir, args.client)
    if not key_path.exists():
        print(f"no private key for client {args.client!r} at {key_path}", file=sys.stderr)
        return 2
    key = keys.load_private_pem(key_path)
    subject = {"idcs": args.idcs} if args.idcs else {"cin": args.cin}
    context = _client_tls(args)
    url = args.url or f"{'https' if context else 'http'}://{settings.host}:{settings.port}"

    async def run() -> int:
        session = None
        if context is not None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                            timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with GatewayClient(url, args.client, key, settings.gateway_id, session=session) as client:
                answer = await client.verify(subject, args.purpose, args.case_ref, args.check or None)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            print(f"cannot reach the gateway at {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            if session is not None:
                await session.close()
        document = answer.json()
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        valid = answer.signature_header is not None
        print(f"HTTP {answer.status}; response signature {'valid' if valid else 'INVALID'}", file=sys.stderr)
        checks = document.get("checks") if isinstance(document, dict) else None
        if answer.status < 400 and isinstance(checks, dict) and checks and all(
                isinstance(c, dict) and c.get("status") == "unavailable" for c in checks.values()):
            print("no check could be verified (every one is unavailable)", file=sys.stderr)
            return 1
        return 0 if answer.status < 400 and valid else 1

    return asyncio.run(run())


def _client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    from gateway.trust.tls import client_ssl_context

    if not (args.tls_ca or args.tls_cert):
        return None
    try:
        return client_ssl_context(args.tls_ca, args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS: cannot load the CA, certificate or key: {exc}") from exc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = sub.add_parser("client", help="call a running gateway").add_subparsers(dest="client_cmd", required=True)
    v = client.add_parser("verify", help="POST /v1/verifications as a configured client")
    who = v.add_mutually_exclusive_group(required=True)
    who.add_argument("--idcs")
    who.add_argument("--cin")
    v.add_argument("--client", default="anss.asd")
    v.add_argument("--key", help="the client's private key (PEM); default: its dev key")
    v.add_argument("--purpose", default="asd.eligibility")
    v.add_argument("--case-ref", default="CLI-1")
    v.add_argument("--check", action="append", help="a check to run (repeatable); default: all allowed")
    v.add_argument("--url", help="gateway base URL (default: from config)")
    v.add_argument("--tls-ca", help="CA bundle (PEM) to verify the gateway's certificate (https)")
    v.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    v.add_argument("--tls-key", help="the client certificate's private key (PEM)")
    v.set_defaults(func=cmd_client_verify)
