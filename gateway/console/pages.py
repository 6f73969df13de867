"""Signing in and out of the console, its entry point, its stylesheet and its "no such page".

Login: the form carries a login token (double submit, see ``sessions``); each attempt takes a token from two
rate-limit buckets, one per client address and one per *configured* officer id — every id that is not an
officer's shares one bucket, so typing made-up ids creates no bucket (``[console] login_attempts`` per
``login_window_minutes``, on the sign-in limiter: the gateway's Redis limiter, shared by replicas, or else
buckets of its own that API clients never share, so a flood of sign-ins cannot crowd them out); the password
is checked off the event loop, in the same time whether or not the officer exists. A failed attempt is
logged ``console_login_failed`` with the officer id only if it is a configured officer (never what was typed
otherwise), a throttled one ``rate_limited``.
"""

from __future__ import annotations

import asyncio
import re

import structlog
from aiohttp import web

from gateway.console.passwords import verify_password
from gateway.console.sessions import LOGIN_COOKIE, LOGIN_TOKEN_S, SESSION_COOKIE
from gateway.console.web import LoginRequired, Officer, Page, mark_refused, page, redirect, signed_in
from gateway.trust.ratelimit import Limit
from gateway.trust.roles import OFFICER, authenticated_as, check_role

log = structlog.get_logger("gateway.console")
SAFE_NEXT = re.compile(r"/console/[A-Za-z0-9/_.?=&%-]{0,500}")
UNKNOWN_OFFICERS = "console-login:unknown-officer"  # the one bucket of every id that is not an officer's


def _next(value: str | None) -> str:
    """Where to go after signing in: a console page of ours, never another site."""
    return value if value and SAFE_NEXT.fullmatch(value) and "//" not in value else "/console/search"


def login_form(current: Page, status: int = 200, message: str | None = None, kind: str = "error",
               officer_id: str = "") -> web.Response:
    cookie, token = current.console.codec.login_token()
    current.cookies[LOGIN_COOKIE] = (cookie, LOGIN_TOKEN_S)
    return current.render("login.html", status, login_token=token, next=_next(current.request.query.get("next")),
                          message=current.t(message) if message else "", message_kind=kind, officer_id=officer_id)


@page(login=False)
async def root(current: Page) -> web.Response:
    current.note.outcome = "console_home"
    try:
        signed_in(current)
    except LoginRequired:
        return redirect("/console/login")
    return redirect("/console/search")


@page(login=False)
async def show_login(current: Page) -> web.Response:
    current.note.outcome = "console_login_form"
    query = current.request.query
    try:
        signed_in(current)
    except LoginRequired:
        pass
    else:
        return redirect(_next(query.get("next")))
    if "expired" in query:
        return login_form(current, message="login_expired", kind="info")
    if "bye" in query:
        return login_form(current, message="logged_out", kind="ok")
    return login_form(current)


async def _throttled(current: Page, officer: Officer | None) -> bool:
    """Whether this attempt is over the limit, for the officer (or the unknown ids) or for the address."""
    settings = current.runtime.settings.console
    limit = Limit(settings.login_attempts / (settings.login_window_minutes * 60), settings.login_attempts)
    address = current.request.remote or "unknown"
    by_id = f"console-login:officer:{officer.id}" if officer is not None else UNKNOWN_OFFICERS
    try:
        by_officer = await current.runtime.sign_in_limiter.take(by_id, limit)
        by_address = await current.runtime.sign_in_limiter.take(f"console-login:address:{address}", limit)
    except Exception as exc:  # logins are refused while attempts cannot be counted
        log.error("console_login_limiter_unavailable", error=type(exc).__name__)
        return True
    return not (by_officer.allowed and by_address.allowed)


@page(login=False)
async def do_login(current: Page) -> web.Response:
    form = await current.form()
    note = current.note
    officer_id = form.get("officer", "").strip()[:128]
    officer = current.console.officers.get(officer_id)
    if officer is not None:
        note.detail["officer"] = officer.id
    if not current.console.codec.check_login_token(current.request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        mark_refused(current, "console_csrf_failed", "the login form's token is missing, expired or wrong")
        return login_form(current, 403, "form_expired", officer_id=officer_id)
    if await _throttled(current, officer):
        mark_refused(current, "rate_limited", "too many login attempts")
        return login_form(current, 429, "login_throttled", officer_id=officer_id)
    password = form.get("password", "")
    if not await asyncio.to_thread(verify_password, password, officer.password_hash if officer else None) \
            or officer is None:
        mark_refused(current, "console_login_failed", "wrong officer id or password")
        return login_form(current, 401, "login_failed", officer_id=officer_id)
    check_role(current.runtime.settings, officer.id, OFFICER)
    authenticated_as(current.request, officer.id)
    session = current.console.codec.open(officer.id, officer.password_hash)
    current.session = session
    note.client = officer.id
    note.outcome = "console_login"
    note.detail["session"] = session.session_id
    current.cookies[SESSION_COOKIE] = (current.console.codec.encode(session), session.expires_at - session.login_at)
    current.drop_cookies.add(LOGIN_COOKIE)
    return redirect(_next(form.get("next")))


@page()
async def do_logout(current: Page) -> web.Response:
    await current.checked_form()
    current.note.outcome = "console_logout"
    current.drop_cookies.add(SESSION_COOKIE)
    return redirect("/console/login?bye=1")


@page(login=False)
async def static(current: Page) -> web.Response:
    current.note.outcome = "console_static"
    name = current.request.match_info["name"]
    body = current.console.static.get(name)
    if body is None:
        return await _not_found(current)
    return web.Response(body=body, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=86400"})


async def _not_found(current: Page) -> web.Response:
    mark_refused(current, "not_found", "no such console page")
    return current.render("error.html", 404, status=404, message=current.t("error_404"))


not_found = page(login=False)(_not_found)
