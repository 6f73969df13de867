"""A real gateway stack whose officer signs in to the console with a known password, and a small form-posting
browser over aiohttp (cookies kept, CSRF tokens read from the pages) for the console's HTTP-level tests."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from functools import cache
from html import unescape
from pathlib import Path

import aiohttp
import pytest

from gateway.config.settings import Settings
from gateway.console.passwords import hash_password
from tests.gateway.conftest import Stack, build_stack

OFFICER = "dgssi.officer"  # config/clients.toml: role = "officer"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def with_officer(settings: Settings) -> Settings:
    """The officer's console password set, tree heads signed within half a second."""
    officer = replace(settings.clients[OFFICER], console_password_hash=password_hash())
    return replace(settings, clients={**settings.clients, OFFICER: officer}, tree_head_interval_s=0.5)


@dataclass
class Seen:
    status: int
    text: str
    url: str
    headers: dict[str, str]

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found, "no CSRF token on this page"
        return unescape(found.group(1))


class Browser:
    """Follows redirects, keeps cookies (on 127.0.0.1 too), remembers the last page's CSRF token."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers or {})
        self.last: Seen | None = None

    async def close(self) -> None:
        await self.http.close()

    async def _seen(self, response: aiohttp.ClientResponse) -> Seen:
        seen = Seen(response.status, await response.text(), str(response.url), dict(response.headers))
        self.last = seen
        return seen

    async def get(self, path: str, *, follow: bool = True) -> Seen:
        async with self.http.get(self.base + path, allow_redirects=follow) as response:
            return await self._seen(response)

    async def post(self, path: str, fields: dict[str, str], *, csrf: bool = True, follow: bool = True) -> Seen:
        data = dict(fields)
        if csrf and "csrf" not in data:
            assert self.last is not None
            data["csrf"] = self.last.csrf
        async with self.http.post(self.base + path, data=data, allow_redirects=follow) as response:
            return await self._seen(response)

    async def login(self, officer: str = OFFICER, password: str = PASSWORD) -> Seen:
        await self.get("/console/login")
        return await self.post("/console/login", {"officer": officer, "password": password})

    def cookie(self, name: str) -> str | None:
        for cookie in self.http.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None


@pytest.fixture
async def console_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with build_stack(tmp_path, with_officer) as built:
        yield built


@pytest.fixture
async def browser(console_stack: Stack) -> AsyncIterator[Browser]:
    b = Browser(console_stack.gateway.url)
    try:
        yield b
    finally:
        await b.close()
