"""``client verify``, ``client call`` and ``client services``: call a running gateway as a configured client,
signing with its key. With the gateway's checkpoint verifier key (``--log-vkey`` or ``ANSS_GATEWAY_LOG_VKEY``),
every answer's ``Log-Checkpoint`` is checked against the largest checkpoint seen of that log (the state file:
``--checkpoint-state``, ``ANSS_GATEWAY_CLIENT_STATE``, else ``gateway.client_log.default_state_path``); a fork
is one ``LOG FORK`` line on stderr naming both checkpoints, and exit 3, the state file left as it was."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway.cli.common import load_settings
from gateway.config.settings import ConfigError, Settings
from gateway.crypto import keys

if TYPE_CHECKING:
    from gateway.client_log import LogWatch

EXIT_FORK = 3  # the gateway showed a checkpoint inconsistent with one it showed before, or an invalid one


def _connect(args: argparse.Namespace, settings: Settings, client_id: str,
             exchange: Callable[[Any], Awaitable[Any]]) -> int:
    """Sign as ``client_id`` (its ``--key``, else its dev key), run ``exchange(client)`` against the gateway,
    print the JSON answer and one status line; exit 1 when unreachable, refused or not validly signed."""
    import aiohttp

    from gateway.client import GatewayClient
    from gateway.client_log import LogCheckpointInvalid, LogForked, LogWatchError
    from gateway.crypto.keyring import dev_client_key_path

    key_path = Path(args.key) if args.key else dev_client_key_path(settings.state_dir, client_id)
    if not key_path.exists():
        print(f"no private key for client {client_id!r} at {key_path}", file=sys.stderr)
        return 2
    key = keys.load_private_pem(key_path)
    context = _client_tls(args)
    watch = _log_watch(args)
    url = args.url or f"{'https' if context else 'http'}://{settings.host}:{settings.port}"

    async def run() -> int:
        session = None
        if context is not None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                            timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with GatewayClient(url, client_id, key, settings.gateway_id, session=session,
                                     log_watch=watch) as client:
                answer = await exchange(client)
        except LogForked as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_FORK
        except LogCheckpointInvalid as exc:
            print(f"LOG CHECKPOINT INVALID: {exc}", file=sys.stderr)
            return EXIT_FORK
        except LogWatchError as exc:  # a proof the gateway did not give, a damaged state file: nothing decided
            print(f"the gateway's log could not be checked: {exc}", file=sys.stderr)
            return 1
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            print(f"cannot reach the gateway at {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            if session is not None:
                await session.close()
        try:
            document = answer.json()
        except ValueError:
            print(f"HTTP {answer.status}: the answer is not JSON", file=sys.stderr)
            return 1
        valid = answer.signature_header is not None
        if getattr(args, "explain", False) and isinstance(document, dict) and answer.status < 400:
            print(explain(document))
        else:
            print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        print(f"HTTP {answer.status}; response signature {'valid' if valid else 'INVALID'}", file=sys.stderr)
        checks = document.get("checks") if isinstance(document, dict) else None
        if answer.status < 400 and isinstance(checks, dict) and checks and all(
                isinstance(c, dict) and c.get("status") == "unavailable" for c in checks.values()):
            print("no check could be verified (every one is unavailable)", file=sys.stderr)
            return 1
        return 0 if answer.status < 400 and valid else 1

    return asyncio.run(run())


def _log_watch(args: argparse.Namespace) -> LogWatch | None:
    """The watch over the gateway's log, when its checkpoint verifier key is given."""
    from gateway.audit.checkpoint import ED25519, CheckpointError, parse_verifier_key
    from gateway.client_log import LogWatch, default_state_path

    text = getattr(args, "log_vkey", None) or os.environ.get("ANSS_GATEWAY_LOG_VKEY")
    if not text:
        return None
    try:
        vkey = parse_verifier_key(text)
    except CheckpointError as exc:
        raise ConfigError(f"--log-vkey / ANSS_GATEWAY_LOG_VKEY: not a verifier key ({exc})") from exc
    if vkey.key_type != ED25519:
        raise ConfigError("--log-vkey / ANSS_GATEWAY_LOG_VKEY: the gateway's checkpoint key is of type 0x01 (the "
                          "line `anss-gateway witness log-key` prints), not a witness key")
    state = getattr(args, "checkpoint_state", None)
    return LogWatch(vkey, Path(state) if state else default_state_path())


def explain(document: dict[str, Any]) -> str:
    """The explanation lines a check gives (``verdict.explanation``), else the JSON."""
    lines: list[str] = []
    for name, result in (document.get("checks") or {}).items():
        verdict = result.get("verdict") if isinstance(result, dict) else None
        text = verdict.get("explanation") if isinstance(verdict, dict) else None
        if isinstance(text, list) and text:
            lines += [f"{name}:"] + [f"  {line}" for line in text]
    return "\n".join(lines) if lines else orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def cmd_client_verify(args: argparse.Namespace) -> int:
    settings = load_settings(args, writes_state=False)  # reads a key, writes nothing
    subject = {"idcs": args.idcs} if args.idcs else {"cin": args.cin}
    return _connect(args, settings, args.client,
                    lambda client: client.verify(subject, args.purpose, args.case_ref, args.check or None,
                                                 args.as_of, args.language))


def _param(value: str) -> tuple[str, str]:
    name, sep, given = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("a parameter is name=value, e.g. idcs=1234567890")
    return name, given


def cmd_client_call(args: argparse.Namespace) -> int:
    settings = load_settings(args, writes_state=False)  # reads a key, writes nothing
    if args.service not in settings.services:
        print(f"no service {args.service!r} in this configuration; known: {sorted(settings.services)}",
              file=sys.stderr)
        return 2
    entitled = [(c.id, r.purpose) for c in settings.clients.values() for r in c.services if r.service == args.service]
    client_id = args.client
    if client_id is None:
        ids = sorted({c for c, _ in entitled})
        if len(ids) != 1:
            print(f"give --client: {'no configured client' if not ids else 'clients ' + ', '.join(ids)} may call "
                  f"{args.service!r}", file=sys.stderr)
            return 2
        client_id = ids[0]
    purpose = args.purpose
    if purpose is None:
        purposes = sorted({p for c, p in entitled if c == client_id})
        if len(purposes) != 1:
            print(f"give --purpose: client {client_id!r} may call {args.service!r} for "
                  f"{purposes or 'no purpose'}", file=sys.stderr)
            return 2
        purpose = purposes[0]
    document = {"purpose": purpose, "case_ref": args.case_ref, "params": dict(args.param or [])}
    return _connect(args, settings, client_id,
                    lambda client: client.request("POST", f"/v1/services/{args.service}", document))


def cmd_client_services(args: argparse.Namespace) -> int:
    settings = load_settings(args, writes_state=False)  # reads a key, writes nothing
    return _connect(args, settings, args.client, lambda client: client.request(
        "GET", f"/v1/services/{args.service}" if args.service else "/v1/services"))


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
    v.add_argument("--as-of", metavar="YYYY-MM-DD",
                   help="verify as on this earlier date (ages, school year, declarations, rates in force)")
    v.add_argument("--language", choices=("fr", "en"),
                   help="the language of explanations (sent as Accept-Language; the gateway's default is fr)")
    v.add_argument("--explain", action="store_true",
                   help="print the checks' explanation lines (where a check gives them) instead of the JSON")
    v.set_defaults(func=cmd_client_verify)

    c = client.add_parser("call", help="POST /v1/services/SERVICE: call another administration's service",
                          description="Call a service of config/services.toml as a configured client (the one "
                                      "client whose rights name the service, unless --client is given), for the one "
                                      "purpose its rights allow (unless --purpose is given). Prints the signed JSON "
                                      "answer; exit 1 when refused or unreachable.")
    c.add_argument("service", help="e.g. rnp.person")
    c.add_argument("--param", action="append", type=_param, metavar="NAME=VALUE",
                   help="a parameter of the service (repeatable), e.g. --param idcs=1234567890")
    c.add_argument("--client", help="the calling client (default: the one configured client with a right to it)")
    c.add_argument("--purpose", help="default: the one purpose the client's rights allow for this service")
    c.add_argument("--case-ref", default="CLI-1")
    c.add_argument("--key", help="the client's private key (PEM); default: its dev key")
    c.set_defaults(func=cmd_client_call)

    ls = client.add_parser("services", help="GET /v1/services: the services a client may use (or one, as OpenAPI)")
    ls.add_argument("service", nargs="?", help="describe this one service (its OpenAPI 3.1 document)")
    ls.add_argument("--client", required=True)
    ls.add_argument("--key", help="the client's private key (PEM); default: its dev key")
    ls.set_defaults(func=cmd_client_services)
    for command in (c, ls):
        command.add_argument("--url", help="gateway base URL (default: from config)")
        command.add_argument("--tls-ca", help="CA bundle (PEM) to verify the gateway's certificate (https)")
        command.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
        command.add_argument("--tls-key", help="the client certificate's private key (PEM)")
    for command in (v, c, ls):
        command.add_argument("--log-vkey", metavar="VKEY",
                             help="the gateway's checkpoint verifier key (`anss-gateway witness log-key`, from its "
                                  "operator): check every answer's Log-Checkpoint for a fork of the log (default: "
                                  "$ANSS_GATEWAY_LOG_VKEY; unset: no check)")
        command.add_argument("--checkpoint-state", metavar="FILE",
                             help="where the largest checkpoint seen of each log is kept (default: "
                                  "$ANSS_GATEWAY_CLIENT_STATE, else $XDG_STATE_HOME/anss-gateway/checkpoints.json)")
