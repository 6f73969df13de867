"""``citizen token``: a development identity provider's token for a citizen's access log."""

from __future__ import annotations

import argparse
import sys

from gateway.cli.common import load_settings


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


def cmd_citizen_token(args: argparse.Namespace) -> int:
    """Mint a dev identity provider token for ``GET /v1/citizen/access-log`` (development only)."""
    from gateway.citizen import devidp

    try:
        token = devidp.mint(load_settings(args), args.idcs, args.cin, args.lifetime)
    except devidp.NotTheDevProvider as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
