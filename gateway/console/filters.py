"""The console's search form: from posted fields to a ``LogQuery``, and what of it may be logged.

The same filters as the officers' API: time range (local time in the configured zone), client, purpose,
case reference, outcome, check, source, and the citizen — by identifier (IDCS or CIN), which is turned into
its keyed-HMAC pseudonym at once and never kept, logged or sent back in a link; or by pseudonym, as the entry
page and the next-page button post it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.audit.pseudonym import Pseudonymiser
from gateway.audit.query import LogQuery
from gateway.config.settings import Settings

PAGE_SIZE = 50
IDCS = re.compile(r"[0-9]{10}")
CIN = re.compile(r"[A-Z]{1,2}[0-9]{5,6}")
PSEUDONYM = re.compile(r"[0-9a-f]{64}")
CURSOR = re.compile(r"[0-9]{1,18}")  # an entry index: below 2**63 in every store (and in the access log's detail)
TEXT = re.compile(r"[\w.:/@+-][\w .:/@+-]{0,127}")
TEXT_FILTERS = ("client", "purpose", "case_ref", "outcome", "check", "source")
CARRIED = ("since", "until", *TEXT_FILTERS)


class FilterInvalid(ValueError):
    """A filter the form cannot hold; the message names it."""


@dataclass(frozen=True)
class Filters:
    query: LogQuery
    shown: dict[str, str]  # what the form shows again (the identifier included: it is the officer's own page)
    carry: list[tuple[str, str]] = field(default_factory=list)  # hidden fields of the next-page form
    logged: dict[str, Any] = field(default_factory=dict)  # as the officers' API logs them: no identifier


def _local_time(value: str, name: str, zone: ZoneInfo) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # month 13; year 1 or 9999 shifted out of range by its offset
        raise FilterInvalid(f"{name}: not a date and time") from exc


def choices(settings: Settings) -> dict[str, list[str]]:
    """The values the form offers for each closed filter."""
    return {"clients": sorted(settings.clients), "purposes": sorted(settings.purposes),
            "checks": list(settings.checks.names),
            "sources": sorted(c.name for c in settings.connectors),
            "outcomes": ["answered", "partial", "subject_not_found", "forbidden_purpose", "forbidden_check",
                         "consent_missing", "consent_revoked", "invalid_assertion", "rate_limited",
                         "consent_granted", "consent_revoked", "console_search", "console_login",
                         "console_login_failed"]}


def parse(form: dict[str, str], settings: Settings, pseudonymiser: Pseudonymiser) -> Filters:
    zone = ZoneInfo(settings.anomalies.timezone)
    shown = {name: form.get(name, "").strip() for name in (*CARRIED, "citizen_kind", "citizen", "subject")}
    since = _local_time(shown["since"], "since", zone)
    until = _local_time(shown["until"], "until", zone)
    if since and until and since >= until:
        raise FilterInvalid("since must come before until")
    values: dict[str, str | None] = {}
    for name in TEXT_FILTERS:
        value = shown[name]
        if value and not TEXT.fullmatch(value):
            raise FilterInvalid(f"{name}: unexpected characters")
        values[name] = value or None
    subject = None
    kind, identifier = shown["citizen_kind"] or "idcs", shown["citizen"].upper()
    if identifier:
        if kind not in ("idcs", "cin") or not (IDCS if kind == "idcs" else CIN).fullmatch(identifier):
            raise FilterInvalid("citizen: an IDCS is 10 digits, a CIN 1-2 letters and 5-6 digits")
        subject = pseudonymiser.pseudonym(kind, identifier)
        shown["subject"] = ""
    elif shown["subject"]:
        if not PSEUDONYM.fullmatch(shown["subject"]):
            raise FilterInvalid("subject: not a pseudonym")
        subject = shown["subject"]
    cursor_text = form.get("cursor", "").strip()
    if cursor_text and not CURSOR.fullmatch(cursor_text):
        raise FilterInvalid("cursor: not a page of these results")
    query = LogQuery(since=since, until=until, client=values["client"], purpose=values["purpose"],
                     case_ref=values["case_ref"], outcome=values["outcome"], check=values["check"],
                     source=values["source"], subject=subject, limit=PAGE_SIZE,
                     cursor=int(cursor_text) if cursor_text else None)
    carry = [(name, shown[name]) for name in CARRIED if shown[name]]
    if subject:
        carry.append(("subject", subject))
    logged: dict[str, Any] = {name: values[name] for name in TEXT_FILTERS if values[name]}
    if subject:
        logged["subject"], logged["subject_kind"] = subject, kind if identifier else "pseudonym"
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            logged[name] = moment.isoformat(timespec="microseconds")
    logged["limit"] = PAGE_SIZE
    if query.cursor is not None:
        logged["cursor"] = query.cursor
    return Filters(query, shown, carry, logged)
