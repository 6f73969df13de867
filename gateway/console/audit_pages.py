"""The console's pages over the access log: search, entry detail, integrity, anomaly flags.

Each is one access-log entry with the officer as client and its own outcome: ``console_search`` (with the
filters in ``detail.filters`` and the citizen's pseudonym as the entry's subject — never the identifier),
``console_entry_shown`` (``detail.entry``), ``console_integrity_shown``, ``console_log_verification``
(``detail.verification``: the result; the integrity page shows the latest such entry as the last
verification, whichever replica ran it), ``console_anomalies_shown`` (``detail.flags``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.api.anomalies import scan
from gateway.audit.merkle import leaf_hash
from gateway.audit.query import LogQuery
from gateway.console import filters
from gateway.console.proofs import head_view, inclusion, trusted_keys
from gateway.console.web import Page, Refused, page
from gateway.keys import b64url

VERIFICATION_OUTCOME = "console_log_verification"


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
        note.detail["reason"] = str(exc)
        shown = {k: v for k, v in form.items() if k != "csrf"}
        return current.render("search.html", 400, form=shown, choices=filters.choices(settings), error=str(exc),
                              page_result=None, carry=[], zone=current.t.zone_name)
    note.subject = chosen.query.subject
    note.detail["filters"] = chosen.logged
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
    try:
        raw = await access_log.entry(index)
        stored_leaf = (await access_log.leaf_hashes(index, index + 1))[0]
    except IndexError as exc:
        raise Refused(404, "not_found", "error_404", "no such entry") from exc
    leaf = leaf_hash(raw) if raw is not None else stored_leaf
    keys = await trusted_keys(current.runtime)
    proof = await inclusion(access_log, index, leaf, keys, current.runtime.settings.tree_head_interval_s)
    decoded: dict[str, Any] | None = orjson.loads(raw) if raw is not None else None
    detail = decoded.get("detail") if decoded else None
    detail_json = orjson.dumps(detail, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() if detail else ""
    return current.render("entry.html", index=index, entry=decoded, proof=proof, leaf_hash=b64url(leaf),
                          detail_json=detail_json)


async def _integrity(current: Page, result: dict[str, Any] | None = None) -> web.Response:
    access_log = current.runtime.access_log
    keys = await trusted_keys(current.runtime)
    count = await access_log.count()
    signed = await access_log.latest_tree_head()
    head = head_view(signed, keys) if signed else None
    last = None
    found = await current.runtime.access_log.search(LogQuery(outcome=VERIFICATION_OUTCOME, limit=1))
    if found.hits:
        hit = found.hits[0]
        verification = hit.entry.get("detail", {}).get("verification", {})
        last = {**verification, "time": hit.entry.get("time"), "officer": hit.entry.get("client"),
                "entry": hit.index}
    return current.render("integrity.html", head=head, count=count,
                          unsigned=count - (head.tree_size if head else 0), last=last, result=result)


@page()
async def integrity(current: Page) -> web.Response:
    current.note.outcome = "console_integrity_shown"
    return await _integrity(current)


@page()
async def verify_now(current: Page) -> web.Response:
    await current.checked_form()
    access_log = current.runtime.access_log
    keys = await trusted_keys(current.runtime)
    size = await access_log.count()
    problem = await access_log.verify(keys)
    result: dict[str, Any] = {"intact": problem is None, "tree_size": size}
    if problem is not None:
        result |= {"index": problem.index, "reason": problem.reason}
    current.note.outcome = VERIFICATION_OUTCOME
    current.note.detail["verification"] = result
    return await _integrity(current, result)


@page()
async def anomalies(current: Page) -> web.Response:
    settings = current.runtime.settings.anomalies
    found = await scan(current.runtime.access_log, settings, datetime.now(UTC))
    current.note.outcome = "console_anomalies_shown"
    current.note.detail["flags"] = len(found.flags)
    return current.render("anomalies.html", flags=found.flags, hours=f"{settings.window_hours:g}",
                          days=settings.baseline_days, truncated=not found.complete, scanned=found.scanned)
