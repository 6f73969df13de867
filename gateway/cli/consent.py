"""``consent grant|revoke|list|show``: citizens' consents, recorded by the ANSS office."""

from __future__ import annotations

import argparse

from gateway.cli.common import load_settings


def cmd_consent(args: argparse.Namespace) -> int:
    from gateway.policy.consent.office import command

    return command(load_settings(args), args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
