"""The console's plumbing: its state, the page wrapper (language, session, HTML errors, headers), forms.

Every console page runs inside the gateway's pipeline, so each request is one access-log entry; the wrapper
fills in what the log records: the officer as the client (once the session checks out), an ``outcome`` per
page (``console_…``), and for refusals the reason. It turns what a person can hit into HTML: no session or
an expired one → a redirect to the login page (logged ``console_login_required``); a bad form token → 403;
anything unexpected → a 500 page (logged ``internal_error``), never a problem+json document.

The form bodies are never recorded, not even as a digest: they hold passwords and citizens' identifiers.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
import structlog
from aiohttp import web

from gateway.api.caller import read_body
from gateway.console.i18n import LANG_COOKIE, LANGUAGES, Translator, negotiate
from gateway.console.sessions import SESSION_COOKIE, Session, SessionCodec, csrf_matches
from gateway.errors import GatewayError, UnsupportedMediaType
from gateway.trust.roles import OFFICER, authenticated_as, check_role
from gateway.web.state import AUDIT_NOTE, PROBLEM_CODE, REQUEST_ID, RUNTIME, AuditNote, Runtime

FORM_PAGES = {"/console/search": "/console/search", "/console/integrity/verify": "/console/integrity"}

log = structlog.get_logger("gateway.console")
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 40
STATIC = resources.files("gateway.console") / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Officer:
    """An officer who may sign in to the console, with the scrypt hash of their password."""

    id: str
    password_hash: str
    dev_password_file: Path | None = None  # development only: where the generated password is kept


@dataclass
class Console:
    codec: SessionCodec
    officers: Mapping[str, Officer]
    templates: jinja2.Environment
    static: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def css_url(self) -> str:
        digest = hashlib.sha256(self.static.get("console.css", b"")).hexdigest()[:12]
        return f"/console/static/console.css?v={digest}"


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


def templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("gateway.console", "templates"),
                              autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def static_files() -> dict[str, bytes]:
    return {item.name: item.read_bytes() for item in STATIC.iterdir() if item.name.endswith(".css")}


class LoginRequired(Exception):
    """No valid session: the person is sent to the login page."""


class Refused(Exception):
    """A refusal shown as an HTML page: ``status``, the outcome ``code`` logged, the message key shown."""

    def __init__(self, status: int, code: str, message: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.message, self.reason = status, code, message, reason


@dataclass
class Page:
    """What a console handler works with for one request."""

    request: web.Request
    console: Console
    runtime: Runtime
    t: Translator
    session: Session | None = None
    cookies: dict[str, tuple[str, float]] = field(default_factory=dict)  # name → (value, max-age s)
    drop_cookies: set[str] = field(default_factory=set)

    @property
    def note(self) -> AuditNote:
        return self.request[AUDIT_NOTE]

    def render(self, template: str, http_status: int = 200, **context: Any) -> web.Response:
        other = "en" if self.t.lang == "fr" else "fr"
        html = self.console.templates.get_template(template).render(
            t=self.t, other_lang=other, static_css=self.console.css_url, page=template.removesuffix(".html"),
            officer=self.session.officer if self.session else None, csrf=self.session.csrf if self.session else "",
            request_id=self.request[REQUEST_ID], **context)
        return web.Response(text=html, status=http_status, content_type="text/html", charset="utf-8")

    async def form(self) -> dict[str, str]:
        """The posted form (``application/x-www-form-urlencoded``), one value per name (the last wins)."""
        settings = self.runtime.settings
        if self.request.content_type != FORM_TYPE:
            raise UnsupportedMediaType(f"a console form is posted as {FORM_TYPE}")
        body = await read_body(self.request, settings.max_body_bytes, settings.body_timeout_s)
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS,
                              strict_parsing=False)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(400, "invalid_request", "error_400", "the form cannot be read") from exc
        return dict(pairs)

    async def checked_form(self) -> dict[str, str]:
        """The form of a signed-in officer, after checking its CSRF token."""
        form = await self.form()
        if self.session is None or not csrf_matches(self.session, form.get("csrf")):
            raise Refused(403, "console_csrf_failed", "form_expired", "the form's CSRF token does not match")
        return form


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def set_cookie(response: web.Response, request: web.Request, name: str, value: str, max_age: float) -> None:
    """HttpOnly, SameSite=Strict, only for /console, and Secure when the request came over TLS."""
    response.set_cookie(name, value, max_age=max(0, int(max_age)), path="/console", httponly=True,
                        samesite="Strict", secure=request.secure)


def drop_cookie(response: web.Response, request: web.Request, name: str) -> None:
    response.del_cookie(name, path="/console", samesite="Strict", secure=request.secure, httponly=True)


def signed_in(page: Page) -> Session:
    """The officer's session, renewed; ``LoginRequired`` if there is none, it expired, the officer is no longer
    configured or their password changed since."""
    console = page.console
    session = console.codec.decode(page.request.cookies.get(SESSION_COOKIE))
    officer = console.officers.get(session.officer) if session else None
    if session is None or officer is None or console.codec.password_tag(officer.password_hash) != session.password_tag:
        raise LoginRequired
    check_role(page.runtime.settings, officer.id, OFFICER)  # the same check as the officers' API
    authenticated_as(page.request, officer.id)
    page.session = console.codec.renew(session)
    page.note.client = officer.id
    page.note.detail["session"] = session.session_id
    page.cookies[SESSION_COOKIE] = (console.codec.encode(page.session), page.session.expires_at
                                    - console.codec.clock())
    return page.session


PageHandler = Callable[[Page], Awaitable[web.Response]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(*, login: bool = True) -> Callable[[PageHandler], Handler]:
    """Wrap a console handler (see the module docstring); ``login=False`` for the pages before signing in."""

    def wrap(handler: PageHandler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            runtime = request.app[RUNTIME]
            console = request.app[CONSOLE]
            t = Translator(negotiate(request), runtime.settings.anomalies.timezone)
            current = Page(request, console, runtime, t)
            try:
                if login:
                    signed_in(current)
                response = await handler(current)
            except LoginRequired:
                current.note.outcome = "console_login_required"
                current.drop_cookies.add(SESSION_COOKIE)
                # back to the page asked for; for a form sent, to the page it was sent from
                target = request.path_qs if request.method == "GET" else FORM_PAGES.get(request.path, "/console/search")
                response = redirect(f"/console/login?expired=1&next={quote(target, safe='')}")
            except Refused as refusal:
                response = _refused(current, refusal.status, refusal.code, refusal.message, refusal.reason)
            except GatewayError as error:
                key = f"error_{error.status}"
                response = _refused(current, error.status, error.code,
                                    key if key in current.t.messages else "error_400", error.detail)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:
                log.exception("console_page_failed", path=request.path)
                response = _refused(current, 500, "internal_error", "error_500", "the console page failed")
            _finish(current, response)
            return response

        return run

    return wrap


def mark_refused(page: Page, code: str, reason: str) -> None:
    """Log this request as refused with ``code`` (its outcome) and ``reason``."""
    page.request[PROBLEM_CODE] = code
    page.note.detail["reason"] = reason


def _refused(page: Page, status: int, code: str, message: str, reason: str) -> web.Response:
    mark_refused(page, code, reason)
    return page.render("error.html", status, status=status, message=page.t(message))


def _finish(page: Page, response: web.Response) -> None:
    request = page.request
    for name in page.drop_cookies:
        drop_cookie(response, request, name)
    for name, (value, max_age) in page.cookies.items():
        if name not in page.drop_cookies:
            set_cookie(response, request, name, value, max_age)
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        set_cookie(response, request, LANG_COOKIE, asked, 365 * 86400)
    response.headers.setdefault("Cache-Control", "no-store")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
