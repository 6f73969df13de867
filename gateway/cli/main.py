"""``anss-gateway``: one module per command group, each adding its commands with ``register(subparsers)``;
this module assembles them and turns configuration and database mistakes into one line and exit status 2.

    serve, simulate, demo, fixtures   gateway.cli.serve
    client verify|call|services       gateway.cli.client
    batch submit|status|results|cancel gateway.cli.batch
    worker                            gateway.cli.worker
    keys generate|jwks|rotate         gateway.cli.keys
    audit verify|export               gateway.cli.audit
    officer password                  gateway.cli.officers
    consent grant|revoke|list|show    gateway.cli.consent
    citizen token                     gateway.cli.citizen
    witness serve|key|log-key|checkpoints   gateway.cli.witness
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys

from gateway.cli import audit, batch, citizen, client, consent, keys, officers, serve, witness, worker
from gateway.config.settings import ConfigError
from gateway.crypto.keys import KeyFileError
from gateway.stores.postgres import DatabaseUnavailable

GROUPS = (serve, client, batch, worker, keys, audit, officers, consent, citizen, witness)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anss-gateway", description="ANSS inter-administration data gateway")
    p.add_argument("--config", help="configuration directory (default: config/, or $ANSS_GATEWAY_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
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
    except KeyFileError as exc:  # names the file, never its content
        print(f"key error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a key, a configured file, an output directory that is not there
        print(f"file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`… | head -1`): what it took was printed; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit's flush)
        return 141
    except OSError as exc:  # a port already in use, a path that is a directory or under a file, no permission…
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except EOFError:  # a prompt (a password) with no terminal to answer it
        print("error: no input: this command asks on a terminal", file=sys.stderr)
        return 2
    except (ValueError, sqlite3.DatabaseError) as exc:  # an unsupported key, a file that is not a database…
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
