"""The ANSS office's consent actions (``anss-gateway consent grant|revoke|list|show``), on the configured
registry directly, each appended to the access log like an API request (method ``CLI``, path
``consent <action>``, client ``cli:<operator>``) — refusals included.

The access log is opened before the registry is touched, so an action that could not be logged is not
done. (A grant written just before the log append fails stays recorded, with its ``request_id`` linking it
to the missing entry: the two stores are separate files.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.audit import AccessRecord, Pseudonymiser
from gateway.config.settings import Settings
from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.policy.consent import evidence as references
from gateway.policy.consent.rules import CONSENT_ID, IDCS, grant_for, parse_time
from gateway.policy.consent.store import Consent, ConsentStore, check_reason
from gateway.stores import backends as storage
from gateway.web.state import AuditNote


@dataclass(frozen=True)
class Outcome:
    status: int
    document: Any  # what to print: a consent, a list of consents, or None after a refusal
    error: str | None = None


@dataclass(frozen=True)
class Context:
    store: ConsentStore
    pseudonymiser: Pseudonymiser
    note: AuditNote
    request_id: str
    operator: str


Action = Callable[[Context], Awaitable[Any]]


def _describe(note: AuditNote, consent: Consent) -> None:
    note.purpose, note.subject, note.checks = consent.purpose, consent.citizen, consent.checks
    note.consent_id, note.legal_basis = consent.consent_id, "consent"


def _idcs(value: str) -> str:
    if not IDCS.fullmatch(value):
        raise BadRequest("--idcs: 10 digits")
    return value


async def _existing(ctx: Context, consent_id: str) -> Consent:
    consent = await ctx.store.get(consent_id) if CONSENT_ID.fullmatch(consent_id) else None
    if consent is None:
        raise NotFound(f"no consent {consent_id!r}")
    return consent


async def run(settings: Settings, action: str, operator: str, work: Action, ok_status: int = 200) -> Outcome:
    """Run one action on the registry and append its access-log entry."""
    started = time.perf_counter()
    request_id = uuid.uuid4().hex
    note = AuditNote(client=f"cli:{operator}")
    access_log = storage.access_log(settings)
    store = storage.consent_store(settings)
    await access_log.open()
    try:
        await store.open()
        ctx = Context(store, Pseudonymiser.load(settings.pseudonym_key_file, settings.state_dir), note, request_id,
                      operator)
        try:
            outcome = Outcome(ok_status, await work(ctx))
            result = note.outcome or "answered"
        except GatewayError as exc:
            outcome, result = Outcome(exc.status, None, exc.detail), exc.code
            note.detail["reason"] = exc.detail
        await access_log.append(AccessRecord(
            time=datetime.now(UTC).isoformat(timespec="microseconds"), request_id=request_id, method="CLI",
            path=f"consent {action}", status=outcome.status, outcome=result,
            latency_ms=round((time.perf_counter() - started) * 1000, 3), client=note.client, purpose=note.purpose,
            legal_basis=note.legal_basis, checks=note.checks, subject=note.subject, detail=note.detail,
            consent_id=note.consent_id,
        ))
        return outcome
    finally:
        await store.close()
        await access_log.close()


def grant(settings: Settings, *, idcs: str, grantee: str, purpose: str, checks: Sequence[str], valid_until: str,
          valid_from: str | None, evidence: str) -> Action:
    async def work(ctx: Context) -> Any:
        ctx.note.purpose, ctx.note.checks = purpose, tuple(checks)
        citizen = ctx.pseudonymiser.pseudonym("idcs", _idcs(idcs))
        ctx.note.subject = citizen
        new = grant_for(
            settings, citizen=citizen, grantee=grantee, purpose=purpose, checks=checks,
            valid_from=parse_time(valid_from, "valid_from") if valid_from else None,
            valid_until=parse_time(valid_until, "valid_until"), evidence=references.from_text(evidence),
            granted_by=f"cli:{ctx.operator}",
            managed=None, request_id=ctx.request_id,
        )
        consent = await ctx.store.grant(new)
        _describe(ctx.note, consent)
        ctx.note.outcome = "consent_granted"
        ctx.note.detail["grantee"] = consent.grantee
        return consent.document(datetime.now(UTC))

    return work


def revoke(consent_id: str, reason: str) -> Action:
    async def work(ctx: Context) -> Any:
        try:
            check_reason(reason)
        except ValueError as exc:
            raise BadRequest(f"--reason: {exc}") from exc
        consent = await _existing(ctx, consent_id)
        _describe(ctx.note, consent)
        revocation = await ctx.store.revoke(consent.consent_id, reason, f"cli:{ctx.operator}")
        if revocation is None:
            raise NotFound(f"no consent {consent_id!r}")
        ctx.note.outcome = "consent_revoked" if revocation.changed else "consent_already_revoked"
        return revocation.consent.document(datetime.now(UTC))

    return work


def show(consent_id: str) -> Action:
    async def work(ctx: Context) -> Any:
        consent = await _existing(ctx, consent_id)
        _describe(ctx.note, consent)
        ctx.note.outcome = "consent_shown"
        return consent.document(datetime.now(UTC))

    return work


def list_for(idcs: str) -> Action:
    async def work(ctx: Context) -> Any:
        citizen = ctx.pseudonymiser.pseudonym("idcs", _idcs(idcs))
        ctx.note.subject = citizen
        consents = await ctx.store.list_for(citizen)
        ctx.note.outcome = "consents_listed"
        ctx.note.detail["count"] = len(consents)
        now = datetime.now(UTC)
        return {"consents": [c.document(now) for c in consents]}

    return work


def operator_name(given: str | None) -> str:
    """Who acts, for the access log: ``--operator``, else the login name."""
    if given:
        return given
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def command(settings: Settings, args: Any) -> int:
    """``anss-gateway consent <action>``: print the result as JSON; exit 1 if not found, 2 if refused."""
    import asyncio
    import sys

    import orjson

    action: str = args.consent_cmd
    if action == "grant":
        work = grant(settings, idcs=args.idcs, grantee=args.grantee, purpose=args.purpose, checks=args.check,
                     valid_until=args.valid_until, valid_from=args.valid_from, evidence=args.evidence)
    elif action == "revoke":
        work = revoke(args.consent_id, args.reason)
    elif action == "show":
        work = show(args.consent_id)
    else:
        work = list_for(args.idcs)
    try:
        outcome = asyncio.run(run(settings, action, operator_name(args.operator), work,
                                  201 if action == "grant" else 200))
    except storage.store_errors(settings) as exc:
        print(f"cannot use the consent registry or the access log: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if outcome.error is not None:
        print(f"refused ({outcome.status}): {outcome.error}", file=sys.stderr)
        return 1 if outcome.status == 404 else 2
    print(orjson.dumps(outcome.document, option=orjson.OPT_INDENT_2).decode())
    return 0
