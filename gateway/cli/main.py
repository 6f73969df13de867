"""``anss-gateway``: serve, simulate, demo, client verify, keys, audit verify, consent, officer, citizen token,
fixtures."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from datetime import timedelta
from pathlib import Path

import orjson

from gateway.config.settings import ConfigError, Settings, load
from gateway.crypto import keys
from gateway.stores.postgres import DatabaseUnavailable
from gateway.web import logs


def _settings(args: argparse.Namespace) -> Settings:
    return load(Path(args.config) if args.config else None)


TLS_ENV = {"tls_cert": "ANSS_GATEWAY_TLS_CERT", "tls_key": "ANSS_GATEWAY_TLS_KEY",
           "tls_client_ca": "ANSS_GATEWAY_TLS_CLIENT_CA"}


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

    settings = _settings(args)
    ssl_context = _server_tls(args)
    logs.configure(json=True)
    asyncio.run(serve(settings, with_simulators=args.with_simulators, ssl_context=ssl_context))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.web.runner import simulate

    logs.configure(json=True)
    asyncio.run(simulate(_settings(args)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import run_demo

    logs.configure(level="WARNING", json=True)
    return asyncio.run(run_demo(_settings(args), as_json=args.json))


def cmd_client_verify(args: argparse.Namespace) -> int:
    import aiohttp

    from gateway.client import GatewayClient
    from gateway.crypto.keyring import dev_client_key_path

    settings = _settings(args)
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
    from gateway.crypto.keyring import load_signing_keys

    _active, published = load_signing_keys(_settings(args))
    print(orjson.dumps(keys.jwks(published), option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from gateway.crypto.keyring import GatewaySigningKeys

    settings = _settings(args)
    source = GatewaySigningKeys(settings)
    if source.store is None:
        print(f"the signing key is the configured file {settings.signing_key_file}: rotate it in the "
              "configuration (new `signing_key_file`, the old one under `previous_signing_key_files`)",
              file=sys.stderr)
        return 2
    rotation = source.store.rotate_detailed(args.alg)
    overlap = timedelta(seconds=round(source.overlap_s))
    print(f"old kid: {rotation.previous}\nnew kid: {rotation.key.kid} ({rotation.key.alg})\n"
          f"overlap: {overlap} (the old key stays in the JWKS until "
          f"{rotation.previous_published_until.isoformat(timespec='seconds')})")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit.heads import read_jwks, tree_head_keys
    from gateway.audit.recompute import describe
    from gateway.stores.backends import log_location

    if args.export:
        return _audit_verify_export(Path(args.export), args.jwks)
    settings = _settings(args)
    where = log_location(settings, Path(args.database) if args.database else None)  # [storage], or --database
    if not where.exists():
        print(f"no access log at {where.name}", file=sys.stderr)
        return 2
    trusted = tree_head_keys(settings) | (read_jwks(Path(args.jwks)) if args.jwks else {})
    problem = where.verify(trusted)
    if problem is not None:
        print(f"access log BROKEN at entry {problem.index}: {problem.reason}")
        return 1
    status = where.status()
    print(f"access log intact ({where.name}): {status.entries} entries ({status.pruned} pruned), "
          f"{status.heads} signed tree heads verified against {len(trusted)} known keys")
    if status.latest is not None:
        print(f"latest signed tree head: {describe(status.latest)}; "
              f"{status.entries - status.latest.head.tree_size} entries after it are not signed yet")
    return 0


def _audit_verify_export(path: Path, jwks: str | None) -> int:
    from gateway.audit.heads import read_jwks_document
    from gateway.audit.offline import ExportInvalid, verify_export_file
    from gateway.audit.recompute import describe

    if not jwks:
        print("--export needs --jwks FILE: the gateway's public keys, obtained from the gateway or its operator "
              "over an authenticated channel (never from the export itself)", file=sys.stderr)
        return 2
    try:
        summary = verify_export_file(path, read_jwks_document(Path(jwks)))
    except OSError as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 2
    except ExportInvalid as exc:
        where = f" at entry {exc.index}" if exc.index is not None else ""
        print(f"export BROKEN{where}: {exc}")
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        print(f"export BROKEN: malformed line ({type(exc).__name__}: {exc})")
        return 1
    print(f"export verifies ({path}): entries 0..{summary.tree_size - 1} ({summary.pruned} pruned), "
          f"{summary.heads} signed tree heads of log {summary.log_id}")
    if summary.latest is not None:
        print(f"last signed tree head: {describe(summary.latest)} — compare it with a head obtained independently")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from gateway.audit import AccessLogCorrupt, log_id_for
    from gateway.crypto.keyring import load_signing_keys
    from gateway.stores.backends import log_location

    settings = _settings(args)
    where = log_location(settings, Path(args.database) if args.database else None)
    if not where.exists():
        print(f"no access log at {where.name}", file=sys.stderr)
        return 2
    out = Path(args.out)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")

    async def run() -> tuple[int, int]:
        store = where.store()
        await store.open()
        try:
            if not args.no_sign:  # cover the tail: the export ends at the latest signed head
                await store.issue_tree_head(load_signing_keys(settings)[0], log_id_for(settings.gateway_id))
            with partial.open("w", encoding="utf-8", newline="\n") as fh:
                head = await store.export(fh, inclusion_proofs=not args.no_proofs,
                                          consistency_proofs=not args.no_proofs)
            return head.head.tree_size, await store.count()
        finally:
            await store.close()

    try:
        size, count = asyncio.run(run())
    except (ValueError, AccessLogCorrupt) as exc:
        partial.unlink(missing_ok=True)
        print(f"cannot export: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    print(f"exported entries 0..{size - 1} to {out}" + (f" ({count - size} later entries are not signed yet)"
                                                        if count > size else ""))
    return 0


def cmd_consent(args: argparse.Namespace) -> int:
    from gateway.policy.consent.office import command

    return command(_settings(args), args)


def cmd_officer_password(args: argparse.Namespace) -> int:
    """Prompt for a console password twice and print its scrypt hash for ``console_password_hash``."""
    import getpass

    from gateway.console.passwords import hash_password

    first = getpass.getpass("console password: ")
    if len(first) < 12:
        print("a console password holds at least 12 characters", file=sys.stderr)
        return 2
    if getpass.getpass("again: ") != first:
        print("the two passwords differ", file=sys.stderr)
        return 2
    print(hash_password(first))
    return 0


def cmd_citizen_token(args: argparse.Namespace) -> int:
    """Mint a dev identity provider token for ``GET /v1/citizen/access-log`` (development only)."""
    from gateway.citizen import devidp

    try:
        token = devidp.mint(_settings(args), args.idcs, args.cin, args.lifetime)
    except devidp.NotTheDevProvider as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(token)
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


def _idcs(value: str) -> str:
    from gateway.citizen.token import IDCS

    if not IDCS.fullmatch(value):
        raise argparse.ArgumentTypeError("an IDCS is 10 digits")
    return value


def _cin(value: str) -> str:
    from gateway.citizen.token import CIN

    if not CIN.fullmatch(value):
        raise argparse.ArgumentTypeError("a CIN is 1–2 capital letters and 5–6 digits")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anss-gateway", description="ANSS inter-administration data gateway")
    p.add_argument("--config", help="configuration directory (default: config/, or $ANSS_GATEWAY_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway", description=(
        "Run the gateway. Plain HTTP unless --tls-cert/--tls-key are given; with --tls-client-ca too, "
        "mutual TLS: every client must present a certificate from that CA naming it (SAN URI "
        "urn:anss:client:<client-id>, else the subject CN), and it must match the client's token."))
    s.add_argument("--with-simulators", action="store_true", help="also run the four simulators (development)")
    s.add_argument("--tls-cert", default=os.environ.get(TLS_ENV["tls_cert"]),
                   help="server certificate chain (PEM); env ANSS_GATEWAY_TLS_CERT")
    s.add_argument("--tls-key", default=os.environ.get(TLS_ENV["tls_key"]),
                   help="server private key (PEM); env ANSS_GATEWAY_TLS_KEY")
    s.add_argument("--tls-client-ca", default=os.environ.get(TLS_ENV["tls_client_ca"]),
                   help="CA bundle (PEM) for client certificates: enables and requires mutual TLS; "
                        "env ANSS_GATEWAY_TLS_CLIENT_CA")
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
    v.add_argument("--tls-ca", help="CA bundle (PEM) to verify the gateway's certificate (https)")
    v.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    v.add_argument("--tls-key", help="the client certificate's private key (PEM)")
    v.set_defaults(func=cmd_client_verify)

    k = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_cmd", required=True)
    g = k.add_parser("generate", help="generate a private key (PEM) and its public key")
    g.add_argument("--alg", choices=["EdDSA", "ES256"], default="EdDSA")
    g.add_argument("--out", required=True)
    g.set_defaults(func=cmd_keys_generate)
    k.add_parser("jwks", help="print the gateway's public JWKS: the active key and retired keys still in overlap"
                 ).set_defaults(func=cmd_keys_jwks)
    r = k.add_parser("rotate", help="make a new signing key active; the old one stays published for the overlap",
                     description="Rotate the signing key of the key store under state_dir/keys. A running "
                                 "gateway picks it up within a second. Not for a configured signing_key_file.")
    r.add_argument("--alg", choices=["EdDSA", "ES256"], default="EdDSA")
    r.set_defaults(func=cmd_keys_rotate)

    a = sub.add_parser("audit", help="the access log").add_subparsers(dest="audit_cmd", required=True)
    av = a.add_parser("verify", help="recompute the Merkle tree log; exit 1 naming the first bad entry",
                      description="Recompute the access log from its entries and check every stored hash and "
                                  "signed tree head (against the gateway's keys, retired ones included, and any "
                                  "--jwks); or, with --export, verify an export offline. Exit 0 if it verifies, "
                                  "1 naming the first bad entry, 2 if it cannot be checked.")
    av.add_argument("--database", help="a SQLite access log file (default: the configured [storage])")
    av.add_argument("--export", metavar="FILE", help="verify this export (JSON Lines) instead, offline")
    av.add_argument("--jwks", metavar="FILE", help="the gateway's public keys (JWKS): required with --export; "
                                                   "otherwise added to the configured keys")
    av.set_defaults(func=cmd_audit_verify)
    ae = a.add_parser("export", help="write the log, its signed tree heads and proofs as JSON Lines",
                      description="Sign a tree head for the current size (with the gateway's active key), then "
                                  "export every entry up to it with inclusion and consistency proofs, in the "
                                  "format of docs/merkle-log.md; verify with `audit verify --export FILE --jwks`.")
    ae.add_argument("--out", required=True, metavar="FILE")
    ae.add_argument("--database", help="a SQLite access log file (default: the configured [storage])")
    ae.add_argument("--no-sign", action="store_true", help="export up to the latest existing head only")
    ae.add_argument("--no-proofs", action="store_true", help="leave out inclusion and consistency proofs")
    ae.set_defaults(func=cmd_audit_export)

    o = sub.add_parser("officer", help="security officers").add_subparsers(dest="officer_cmd", required=True)
    o.add_parser("password", help="print the hash of a console password (prompted) for clients.toml",
                 description="Prompt for an officer's console password (twice) and print its scrypt hash: put it "
                             "as `console_password_hash` on the officer's client in clients.toml."
                 ).set_defaults(func=cmd_officer_password)

    c = sub.add_parser("consent", help="citizens' consents for consent-based purposes (the ANSS office)",
                       description="Record, revoke, list and show consents on the configured registry directly. "
                                   "Each action is appended to the access log (method CLI, client cli:<operator>)."
                       ).add_subparsers(dest="consent_cmd", required=True)
    operator = argparse.ArgumentParser(add_help=False)
    operator.add_argument("--operator", help="who acts, for the access log (default: the login name)")
    cg = c.add_parser("grant", parents=[operator], help="record a consent given for an IDCS")
    cg.add_argument("--idcs", required=True, help="the citizen's IDCS (only its pseudonym is stored)")
    cg.add_argument("--grantee", required=True, help="the client id the consent is given to")
    cg.add_argument("--purpose", required=True, help="a consent-based purpose")
    cg.add_argument("--check", action="append", required=True, help="a check consented to (repeatable)")
    cg.add_argument("--valid-from", help="RFC 3339 with a time zone (default: now)")
    cg.add_argument("--valid-until", required=True, help="RFC 3339 with a time zone, e.g. 2027-06-30T23:59:59Z")
    cg.add_argument("--evidence", required=True,
                    help="where the signed consent is kept: document:<id> or an https URL, never a name or identifier")
    cr = c.add_parser("revoke", parents=[operator], help="revoke a consent at once")
    cr.add_argument("consent_id")
    cr.add_argument("--reason", required=True, help="why (≤ 200 characters)")
    cl = c.add_parser("list", parents=[operator], help="the consents of a citizen")
    cl.add_argument("--idcs", required=True)
    cs = c.add_parser("show", parents=[operator], help="one consent")
    cs.add_argument("consent_id")
    for command in (cg, cr, cl, cs):
        command.set_defaults(func=cmd_consent)

    z = sub.add_parser("citizen", help="citizens' access to their log (development identity provider)"
                       ).add_subparsers(dest="citizen_cmd", required=True)
    zt = z.add_parser("token", help="mint a short-lived token of the dev identity provider for a citizen",
                      description="Development only: sign a token with the dev identity provider's key under "
                                  "state_dir/citizen-idp/ (refused when [citizens] jwks_file names another "
                                  "provider's keys). Use it as `Authorization: Bearer <token>` on "
                                  "GET /v1/citizen/access-log.")
    zt.add_argument("--idcs", required=True, type=_idcs, help="the citizen's IDCS (10 digits)")
    zt.add_argument("--cin", type=_cin, help="the citizen's CIN too (optional)")
    zt.add_argument("--lifetime", type=int, default=600, help="seconds (default 600)")
    zt.set_defaults(func=cmd_citizen_token)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:  # its message names the server, never the DSN or a password
        print(f"database unavailable: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
