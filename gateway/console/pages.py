"""Signing in and out of the console, its entry point, its stylesheet and its "no such page".

Login: the form carries a login token (double submit, see ``sessions``); each attempt goes through the
sign-in throttle (``gateway.trust.backoff``) with two buckets: one per (officer id, client address) — every
id that is not a configured officer's counts as one, so typing made-up ids creates no bucket per id — and
one per address (an IPv6 address by its /64). After ``[console] login_attempts`` attempts of one officer
from one address (``login_address_attempts`` from one address), each further one waits ``login_delay_s``,
doubling up to ``login_max_delay_s``: 429 with ``Retry-After``, the password not even checked. No one else
can make an officer wait: failures from another address count there. A correct password forgets the
(officer, address) count and gives its attempt back to the address. The password is checked off the event
loop, in the same time whether or not the officer exists. A failed attempt is logged
``console_login_failed`` with the officer id only if it is a configured officer (never what was typed
otherwise), a throttled one ``rate_limited``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re

import structlog
from aiohttp import web

from gateway.config.console import ConsoleSettings
from gateway.console.passwords import verify_password
from gateway.console.sessions import LOGIN_COOKIE, LOGIN_TOKEN_S, SESSION_COOKIE
from gateway.console.web import LoginRequired, Officer, Page, mark_refused, page, redirect, signed_in
from gateway.trust.backoff import Backoff, Bucket
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


def address_group(remote: str | None) -> str:
    """The address a count is kept for: an IPv4 address, or an IPv6 address's /64 (one host has many)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return (remote or "unknown")[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def sign_in_buckets(settings: ConsoleSettings, officer: Officer | None, remote: str | None) -> list[Bucket]:
    forget_s = settings.login_window_minutes * 60
    address = address_group(remote)
    who = f"officer:{officer.id}" if officer is not None else UNKNOWN_OFFICERS
    return [
        Bucket(f"console-login:{who}:address:{address}",
               Backoff(settings.login_attempts, settings.login_delay_s, settings.login_max_delay_s, forget_s),
               reset_on_success=True),
        Bucket(f"console-login:address:{address}",
               Backoff(settings.login_address_attempts, settings.login_delay_s, settings.login_max_delay_s,
                       forget_s)),
    ]


async def _wait_s(current: Page, buckets: list[Bucket]) -> float:
    """0 when this attempt may go on (it is counted), else the seconds to wait before the next."""
    try:
        return await current.runtime.sign_in_throttle.attempt(buckets)
    except Exception as exc:  # sign-ins are refused while attempts cannot be counted
        log.error("console_login_limiter_unavailable", error=type(exc).__name__)
        return 1.0


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
    buckets = sign_in_buckets(current.runtime.settings.console, officer, current.request.remote)
    wait = await _wait_s(current, buckets)
    if wait > 0:
        retry_s = max(1, math.ceil(wait))
        mark_refused(current, "rate_limited", "too many login attempts")
        current.note.detail["retry_after_s"] = retry_s
        response = login_form(current, 429, "login_throttled", officer_id=officer_id)
        response.headers["Retry-After"] = str(retry_s)
        return response
    password = form.get("password", "")
    if not await asyncio.to_thread(verify_password, password, officer.password_hash if officer else None) \
            or officer is None:
        mark_refused(current, "console_login_failed", "wrong officer id or password")
        return login_form(current, 401, "login_failed", officer_id=officer_id)
    try:
        await current.runtime.sign_in_throttle.succeeded(buckets)
    except Exception as exc:  # the officer is right; an unsettled count only makes the next attempt wait sooner
        log.error("console_login_limiter_unavailable", error=type(exc).__name__)
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
