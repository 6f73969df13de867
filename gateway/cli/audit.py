"""``audit verify|export``: check the access log (or an export, offline) and export it with its proofs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import load_settings, output_problem

if TYPE_CHECKING:
    from gateway.audit.witness.client import WitnessEndpoint


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit.heads import keys_from_jwks, production_keys, tree_head_keys
    from gateway.audit.recompute import describe
    from gateway.audit.verify_log import BeyondOptions, Finding, load_jwks, verify_beyond
    from gateway.config.settings import ConfigError
    from gateway.stores.backends import log_location

    if args.export:
        return _audit_verify_export(Path(args.export), args.jwks)
    settings = load_settings(args, writes_state=False)  # checking a log kept on read-only media is fine
    where = log_location(settings, Path(args.database) if args.database else None)  # [storage], or --database
    if not where.exists():
        print(f"no access log at {where.name}", file=sys.stderr)
        return 2
    try:
        now = _parse_now(args.now)
        extra = tuple(_witness(url, vkey) for url, vkey in args.witness or ())
        trusted = tree_head_keys(settings) | (keys_from_jwks(load_jwks(args.jwks)) if args.jwks else {})
    except (ConfigError, ValueError) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    problem = where.verify(trusted)
    if problem is not None:
        print(f"access log BROKEN at entry {problem.index}: {problem.reason}")
        return 1
    try:
        own = not args.database  # another file: not the configured gateway's checkpoints, unless --witness
        beyond = verify_beyond(settings, where, BeyondOptions(now, args.slack_s, extra, own and not args.no_witnesses,
                                                              own))
    except ConfigError as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    if isinstance(beyond, Finding):
        if beyond.broken:
            print(f"access log BROKEN: {beyond.message}")
            return 1
        print(f"cannot verify: {beyond.message}", file=sys.stderr)
        return 2
    status = where.status()
    trust = "configured key files and JWKS" if production_keys(settings) else "the key store, key files and JWKS"
    print(f"access log intact ({where.name}): {status.entries} entries ({status.pruned} pruned), "
          f"{status.heads} signed tree heads verified against {len(trusted)} known keys ({trust})")
    if status.latest is not None:
        print(f"latest signed tree head: {describe(status.latest)}; "
              f"{status.entries - status.latest.head.tree_size} entries after it are not signed yet")
    for anchor in beyond.anchors[:10]:
        print(f"agrees with {anchor.source}: size {anchor.size}")
    if len(beyond.anchors) > 10:
        print(f"... and {len(beyond.anchors) - 10} more checkpoints")
    return 0


def _parse_now(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError(f"--now {text}: give a time zone (e.g. Z or +01:00)") from None
        return moment.timestamp()


def _witness(url: str, vkey: str) -> WitnessEndpoint:
    from gateway.audit.checkpoint import CheckpointError, parse_verifier_key
    from gateway.audit.witness.client import WitnessEndpoint

    try:
        return WitnessEndpoint(url, parse_verifier_key(vkey))
    except CheckpointError as exc:
        raise ValueError(f"--witness {url}: {exc}") from exc


def _audit_verify_export(path: Path, jwks: str | None) -> int:
    from gateway.audit.offline import ExportInvalid, verify_export_file
    from gateway.audit.recompute import describe
    from gateway.audit.verify_log import load_jwks
    from gateway.config.settings import ConfigError

    if not jwks:
        print("--export needs --jwks FILE: the gateway's public keys, obtained from the gateway or its operator "
              "over an authenticated channel (never from the export itself)", file=sys.stderr)
        return 2
    try:
        summary = verify_export_file(path, load_jwks(jwks))
    except ConfigError as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
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
    held = f"entries 0..{summary.tree_size - 1}" if summary.tree_size else "no entry"
    print(f"export verifies ({path}): {held} ({summary.pruned} pruned), "
          f"{summary.heads} signed tree heads of log {summary.log_id}")
    if summary.latest is not None:
        print(f"last signed tree head: {describe(summary.latest)} — compare it with a head obtained independently")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from gateway.audit import AccessLogCorrupt, log_id_for
    from gateway.crypto.keyring import load_signing_keys
    from gateway.stores.backends import log_location

    settings = load_settings(args)
    where = log_location(settings, Path(args.database) if args.database else None)
    if not where.exists():
        print(f"no access log at {where.name}", file=sys.stderr)
        return 2
    out = Path(args.out)
    problem = output_problem(out)
    if problem is not None:
        print(f"cannot export: {problem}", file=sys.stderr)
        return 2
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
    what = f"entries 0..{size - 1}" if size else "no entry (no signed tree head covers one yet)"
    print(f"exported {what} to {out}" + (f" ({count - size} later entries are not signed yet)" if count > size else ""))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("audit", help="the access log").add_subparsers(dest="audit_cmd", required=True)
    av = a.add_parser("verify", help="recompute the Merkle tree log and check it against its checkpoints; exit 1 "
                                     "naming what is wrong",
                      description="Recompute the access log from its entries and check every stored hash and "
                                  "signed tree head (in production against the configured key files and --jwks "
                                  "only; in development also the key store's keys, retired ones included), then "
                                  "the checkpoints held outside the database (witnesses, high-water file, archive) "
                                  "and the signing cadence; or, with --export, verify an export offline. Exit 0 if "
                                  "it verifies, 1 naming what is wrong, 2 if it cannot be checked.")
    av.add_argument("--database", help="a SQLite access log file (default: the configured [storage]); it is not "
                                       "compared with the configured gateway's checkpoints, only with --witness")
    av.add_argument("--export", metavar="FILE", help="verify this export (JSON Lines) instead, offline")
    av.add_argument("--jwks", metavar="FILE|URL", help="the gateway's public keys (a JWKS file, or an http(s) URL "
                                                       "to fetch it from): required with --export; otherwise added "
                                                       "to the configured keys")
    av.add_argument("--witness", nargs=2, action="append", metavar=("URL", "VKEY"),
                    help="also check against this witness's latest cosigned checkpoint (its URL and verifier key, "
                         "type 0x04); repeatable; the configured [[audit.witnesses]] are always asked")
    av.add_argument("--no-witnesses", action="store_true", help="do not ask the configured witnesses")
    av.add_argument("--now", metavar="TIME", help="judge the signing cadence as of this time (RFC 3339 with a "
                                                  "zone, or POSIX seconds; default: now)")
    av.add_argument("--slack-s", type=float, default=60.0, metavar="S",
                    help="seconds allowed beyond the cadence before a missing head is reported (default 60)")
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
