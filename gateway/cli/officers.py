"""``officer password``: the hash of a security officer's console password."""

from __future__ import annotations

import argparse
import sys


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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    o = sub.add_parser("officer", help="security officers").add_subparsers(dest="officer_cmd", required=True)
    o.add_parser("password", help="print the hash of a console password (prompted) for clients.toml",
                 description="Prompt for an officer's console password (twice) and print its scrypt hash: put it "
                             "as `console_password_hash` on the officer's client in clients.toml."
                 ).set_defaults(func=cmd_officer_password)
