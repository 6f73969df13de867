"""``anss-gateway``: serve, simulate, demo, client verify, keys, audit verify, fixtures."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from gateway import keys, logs
from gateway.settings import ConfigError, Settings, load


def _settings(args: argparse.Namespace) -> Settings:
    return load(Path(args.config) if args.config else None)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.runner import serve

    logs.configure(json=True)
    asyncio.run(serve(_settings(args), with_simulators=args.with_simulators))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.runner import simulate

    logs.configure(json=True)
    asyncio.run(simulate(_settings(args)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    logs.configure(level="WARNING", json=True)
    return asyncio.run(run_demo(_settings(args), as_json=args.json))


def cmd_client_verify(args: argparse.Namespace) -> int:
    from gateway.client import GatewayClient
    from gateway.keyring import dev_client_key_path

    settings = _settings(args)
    key_path = Path(args.key) if args.key else dev_client_key_path(settings.state_dir, args.client)
    if not key_path.exists():
        print(f"no private key for client {args.client!r} at {key_path}", file=sys.stderr)
        return 2
    key = keys.load_private_pem(key_path)
    subject = {"idcs": args.idcs} if args.idcs else {"cin": args.cin}
    url = args.url or f"http://{settings.host}:{settings.port}"

    async def run() -> int:
        async with GatewayClient(url, args.client, key, settings.gateway_id) as client:
            answer = await client.verify(subject, args.purpose, args.case_ref, args.check or None)
        print(orjson.dumps(answer.json(), option=orjson.OPT_INDENT_2).decode())
        valid = answer.signature_header is not None
        print(f"HTTP {answer.status}; response signature {'valid' if valid else 'INVALID'}", file=sys.stderr)
        return 0 if answer.status < 400 and valid else 1

    return asyncio.run(run())


def cmd_keys_generate(args: argparse.Namespace) -> int:
    key = keys.generate(args.alg)
    out = Path(args.out)
    if out.exists():
        print(f"{out} exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    out.write_bytes(keys.private_pem(key))
    out.chmod(0o600)
    out.with_suffix(".pub.pem").write_bytes(keys.public_pem(key.public))
    print(f"private key: {out}\npublic key: {out.with_suffix('.pub.pem')}\nkid: {key.kid}")
    return 0


def cmd_keys_jwks(args: argparse.Namespace) -> int:
    from gateway.keyring import load_gateway_key

    print(orjson.dumps(keys.jwks([load_gateway_key(_settings(args))]), option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit.sqlite import verify_database

    database = Path(args.database) if args.database else _settings(args).audit_database
    if not database.exists():
        print(f"no access log at {database}", file=sys.stderr)
        return 2
    problem = verify_database(database)
    if problem is not None:
        print(f"access log BROKEN at entry {problem.index}: {problem.reason}")
        return 1
    print(f"access log intact ({database})")
    return 0


def cmd_fixtures(args: argparse.Namespace) -> int:
    from simulators.population import FIXTURE_NAMES, Population

    settings = _settings(args)
    population = Population(settings.simulators.seed, settings.simulators.households)
    for name in FIXTURE_NAMES:
        household = population.fixture(name)
        print(f"{name:<20} father idcs={household.father.idcs} cin={household.father.cin}")
    print(f"{'unknown_identifier':<20} idcs={population.unknown_idcs()}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anss-gateway", description="ANSS inter-administration data gateway")
    p.add_argument("--config", help="configuration directory (default: config/, or $ANSS_GATEWAY_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--with-simulators", action="store_true", help="also run the four simulators (development)")
    s.set_defaults(func=cmd_serve)
    sub.add_parser("simulate", help="run the four administration simulators").set_defaults(func=cmd_simulate)
    d = sub.add_parser("demo", help="verify the fixture households end to end")
    d.add_argument("--json", action="store_true", help="one JSON object per verification")
    d.set_defaults(func=cmd_demo)
    sub.add_parser("fixtures", help="print the fixture households' identifiers").set_defaults(func=cmd_fixtures)

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
    v.set_defaults(func=cmd_client_verify)

    k = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_cmd", required=True)
    g = k.add_parser("generate", help="generate a private key (PEM) and its public key")
    g.add_argument("--alg", choices=["EdDSA", "ES256"], default="EdDSA")
    g.add_argument("--out", required=True)
    g.set_defaults(func=cmd_keys_generate)
    k.add_parser("jwks", help="print the gateway's public JWKS").set_defaults(func=cmd_keys_jwks)

    a = sub.add_parser("audit", help="the access log").add_subparsers(dest="audit_cmd", required=True)
    av = a.add_parser("verify", help="recompute the hash chain; exit 1 naming the first bad entry")
    av.add_argument("--database", help="the SQLite access log (default: from config)")
    av.set_defaults(func=cmd_audit_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
