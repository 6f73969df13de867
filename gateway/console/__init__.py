"""The security officers' web console at ``/console``: server-rendered pages (French by default, English
available), served with everything they need by the gateway itself (no script, no external resource).

``setup(app)`` adds its routes and its start-up (session key, officers' password hashes, templates). The pages:
``pages`` (sign in and out, stylesheet, not found), ``audit_pages`` (search, entry, integrity, anomaly flags),
``dashboard`` (the operations dashboard), on the plumbing of ``web``. See docs/officers.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.config.settings import Settings
from gateway.console import audit_pages, dashboard, pages
from gateway.console.passwords import dev_password, hash_password
from gateway.console.sessions import SessionCodec, load_session_key
from gateway.console.web import CONSOLE, Console, Officer, static_files, templates
from gateway.trust.roles import OFFICER
from gateway.web.state import SETTINGS

__all__ = ["CONSOLE", "banner", "officers", "setup"]


def officer_ids(settings: Settings) -> list[str]:
    return sorted(c.id for c in settings.clients.values() if c.role == OFFICER)


def officers(settings: Settings) -> dict[str, Officer]:
    """The officers who may sign in: a configured ``console_password_hash``, or in development (``dev_key``) a
    generated password kept under the state directory. Blocking (scrypt, files): run it in a thread."""
    found = {}
    for officer_id in officer_ids(settings):
        client = settings.clients[officer_id]
        if client.console_password_hash:
            found[officer_id] = Officer(officer_id, client.console_password_hash)
        elif client.dev_key:
            password, path = dev_password(settings.state_dir, officer_id)
            found[officer_id] = Officer(officer_id, hash_password(password), path)
    return found


async def _console_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    c = settings.console
    key = await asyncio.to_thread(load_session_key, c.session_key_file, settings.state_dir)
    app[CONSOLE] = Console(
        codec=SessionCodec(key, idle_s=c.session_idle_minutes * 60, max_s=c.session_max_hours * 3600),
        officers=await asyncio.to_thread(officers, settings),
        templates=templates(),
        static=await asyncio.to_thread(static_files),
    )
    yield


def setup(app: web.Application) -> None:
    """Add the console's routes and start-up to the gateway's application (after its runtime)."""
    app.cleanup_ctx.append(_console_context)
    add = app.router.add_route
    add("GET", "/console", pages.root)
    add("GET", "/console/", pages.root)
    add("GET", "/console/login", pages.show_login)
    add("POST", "/console/login", pages.do_login)
    add("POST", "/console/logout", pages.do_logout)
    add("GET", "/console/static/{name}", pages.static)
    add("GET", "/console/search", audit_pages.search_form)
    add("POST", "/console/search", audit_pages.search)
    add("GET", r"/console/entries/{index:[0-9]{1,18}}", audit_pages.entry)
    add("GET", "/console/integrity", audit_pages.integrity)
    add("POST", "/console/integrity/verify", audit_pages.verify_now)
    add("GET", "/console/anomalies", audit_pages.anomalies)
    add("GET", "/console/dashboard", dashboard.show)
    add("*", "/console/{tail:.*}", pages.not_found)


def banner(app: web.Application, url: str) -> list[str]:
    """What ``serve`` prints about the console: where it is and, in development, how to sign in."""
    console = app.get(CONSOLE)
    lines = [f"officers' console: {url}/console"]
    if console is not None:
        for officer in console.officers.values():
            if officer.dev_password_file is not None:
                password = officer.dev_password_file.read_text(encoding="utf-8").strip()
                lines.append(f"  development sign-in: officer {officer.id!r}, password {password!r} "
                             f"(kept in {officer.dev_password_file})")
    return lines
