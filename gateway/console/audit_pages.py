"""The console's pages over the access log: search, entry detail, integrity, anomaly flags.

Each is one access-log entry with the officer as client and its own outcome: ``console_search`` (with the
filters in ``detail.filters`` and the citizen's pseudonym as the entry's subject — never the identifier),
``console_entry_shown`` (``detail.entry``), ``console_integrity_shown``, ``audit_verification`` (the result in
``detail``, as the officers' API records it: the integrity panel shows the newest such entry, from the API or
the console, whichever replica ran it), ``console_anomalies_shown`` (``detail.flags``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web

from gateway.api.audit import full_verification, last_verification, trusted_head_keys
from gateway.audit.anomaly_view import view
from gateway.audit.merkle import leaf_hash
from gateway.console import filters
from gateway.console.proofs import head_view, inclusion
from gateway.console.web import Page, Refused, mark_refused, page
from gateway.crypto.keys import b64url
from gateway.web.heavy import heavy_read

VERIFICATION = "audit_verification"  # the outcome of a full verification, from the API or the console
log = structlog.get_logger("gateway.console")


@page()
async def search_form(current: Page) -> web.Response:
    current.note.outcome = "console_search_form"
    return current.render("search.html", form={}, choices=filters.choices(current.runtime.settings), error="",
                          page_result=None, carry=[], zone=current.t.zone_name)


@page()
async def search(current: Page) -> web.Response:
    form = await current.checked_form()
    settings = current.runtime.settings
    note = current.note
    note.outcome = "console_search"
    try:
        chosen = filters.parse(form, settings, current.runtime.pseudonymiser)
    except (filters.FilterInvalid, ValueError) as exc:
        mark_refused(current, "invalid_request", str(exc))
        shown = {k: v for k, v in form.items() if k != "csrf"}
        return current.render("search.html", 400, form=shown, choices=filters.choices(settings), error=str(exc),
                              page_result=None, carry=[], zone=current.t.zone_name)
    note.subject = chosen.query.subject
    note.detail["filters"] = chosen.logged
    async with heavy_read(current.runtime):
        result = await current.runtime.access_log.search(chosen.query)
    note.detail["results"] = len(result.hits)
    return current.render("search.html", form=chosen.shown, choices=filters.choices(settings), error="",
                          page_result=result, carry=chosen.carry, zone=current.t.zone_name)


@page()
async def entry(current: Page) -> web.Response:
    access_log = current.runtime.access_log
    index = int(current.request.match_info["index"])
    current.note.outcome = "console_entry_shown"
    current.note.detail["entry"] = index
    async with heavy_read(current.runtime):
        try:
            raw = await access_log.entry(index)
            stored_leaf = (await access_log.leaf_hashes(index, index + 1))[0]
        except IndexError as exc:
            raise Refused(404, "not_found", "error_404", "no such entry") from exc
        leaf = leaf_hash(raw) if raw is not None else stored_leaf
        keys = await trusted_head_keys(current.runtime)
        proof = await inclusion(access_log, index, leaf, keys, current.runtime.settings.tree_head_interval_s)
    decoded: dict[str, Any] | None = orjson.loads(raw) if raw is not None else None
    detail = decoded.get("detail") if decoded else None
    detail_json = orjson.dumps(detail, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() if detail else ""
    return current.render("entry.html", index=index, entry=decoded, proof=proof, leaf_hash=b64url(leaf),
                          detail_json=detail_json)


async def _integrity(current: Page, result: dict[str, Any] | None = None) -> web.Response:
    access_log = current.runtime.access_log
    keys = await trusted_head_keys(current.runtime)
    count = await access_log.count()
    signed = await access_log.latest_tree_head()
    head = head_view(signed, keys) if signed else None
    return current.render("integrity.html", head=head, count=count, unsigned=count - (head.tree_size if head else 0),
                          last=await last_verification(current.runtime.access_log), result=result)


@page()
async def integrity(current: Page) -> web.Response:
    current.note.outcome = "console_integrity_shown"
    return await _integrity(current)


@page()
async def verify_now(current: Page) -> web.Response:
    await current.checked_form()
    async with heavy_read(current.runtime):
        result = await full_verification(current.runtime)  # the shape the officers' API records
    current.note.outcome = VERIFICATION
    current.note.detail.update(result)
    return await _integrity(current, result)


@page()
async def anomalies(current: Page) -> web.Response:
    settings = current.runtime.settings.anomalies
    async with heavy_read(current.runtime):
        found = await view(current.runtime.access_log, settings, current.runtime.settings.clients,
                           datetime.now(UTC))
    current.note.outcome = "console_anomalies_shown"
    current.note.detail["flags"] = len(found.flags)
    return current.render("anomalies.html", flags=found.flags, hours=f"{settings.window_hours:g}",
                          days=settings.baseline_days, truncated=", ".join(found.truncated),
                          unattributed_truncated=found.unattributed_truncated, budget=found.budget,
                          unattributed_budget=found.unattributed_budget)
