"""The officers' console over HTTP, on a real gateway in front of the four simulators: signing in and out,
sessions and CSRF, throttling, HTML errors, search, entry with its inclusion proof, integrity, anomaly flags,
the languages — and what each page leaves in the access log."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from gateway.api.audit import last_verification
from gateway.config.settings import Settings, load
from gateway.console.passwords import dev_password_path
from gateway.console.sessions import LOGIN_COOKIE, SESSION_COOKIE, SessionCodec, load_session_key
from gateway.trust.backoff import LocalSignInThrottle
from gateway.trust.tls import client_ssl_context, server_ssl_context
from gateway.web.runner import gateway_running
from gateway.web.state import RUNTIME
from tests.console.conftest import CSRF, OFFICER, PASSWORD, Browser, Seen, with_officer
from tests.gateway.conftest import Stack, build_stack
from tests.gateway.test_openapi import check_against_openapi
from tests.officers.conftest import raw_log, stored_entries
from tests.trust.pki import make_pki


def entries_with(stack: Stack, **fields: object) -> list[dict[str, object]]:
    return [e for e in stored_entries(stack) if all(e.get(k) == v for k, v in fields.items())]


async def logged(stack: Stack, **fields: object) -> list[dict[str, object]]:
    """Entries with these fields, once the pipeline has written the last request's entry."""
    for _ in range(50):
        found = entries_with(stack, **fields)
        if found:
            return found
        await asyncio.sleep(0.02)
    return []


async def verify_fixture(stack: Stack, case_ref: str = "DOSSIER-1") -> str:
    idcs = stack.population.fixture("child_out_of_school").father.idcs
    answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", case_ref, ["identity"])
    assert answer.status == 200
    return idcs


# --- signing in and out -----------------------------------------------------------------------------------------------


async def test_sign_in_lands_on_the_search_page_with_a_strict_session_cookie(console_stack: Stack,
                                                                             browser: Browser) -> None:
    first = await browser.get("/console/search")
    assert first.url.endswith("/console/login?expired=1&next=/console/search") and first.status == 200
    assert "Votre session a expiré" in first.text
    login_cookie_page = await browser.get("/console/login")
    async with browser.http.post(browser.base + "/console/login", allow_redirects=False, data={
            "officer": OFFICER, "password": PASSWORD, "csrf": login_cookie_page.csrf,
            "next": "/console/search"}) as response:
        assert response.status == 303 and response.headers["Location"] == "/console/search"
        cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; under TLS the cookie is Secure (below)
    page = await browser.get("/console/search")
    assert page.status == 200 and f"<strong>{OFFICER}</strong>" in page.text
    [login] = await logged(console_stack, outcome="console_login")
    assert login["client"] == OFFICER and login["status"] == 303
    assert PASSWORD.encode() not in raw_log(console_stack)


async def test_signing_out_ends_the_session(console_stack: Stack, browser: Browser) -> None:
    await browser.login()
    bye = await browser.post("/console/logout", {})
    assert bye.url.endswith("/console/login?bye=1") and "Vous êtes déconnecté." in bye.text
    assert browser.cookie(SESSION_COOKIE) in (None, "")
    again = await browser.get("/console/anomalies")
    assert "/console/login?expired=1" in again.url
    [out] = await logged(console_stack, outcome="console_logout")
    assert out["client"] == OFFICER


async def test_only_officers_with_the_right_password_sign_in(console_stack: Stack, browser: Browser) -> None:
    for officer, password in ((OFFICER, "wrong password"), ("nobody", PASSWORD), ("anss.asd", PASSWORD)):
        seen = await browser.login(officer, password)
        assert seen.status == 401 and "Identifiant ou mot de passe incorrect." in seen.text, officer
        assert browser.cookie(SESSION_COOKIE) is None
    failed = await logged(console_stack, outcome="console_login_failed")
    assert len(failed) == 3 and all(e["client"] is None and e["status"] == 401 for e in failed)
    assert [e["detail"].get("officer") for e in failed] == [OFFICER, None, None]  # type: ignore[union-attr]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frozen_throttle(stack: Stack, max_buckets: int = 100_000) -> tuple[LocalSignInThrottle, FakeClock]:
    """The gateway's sign-in throttle replaced by one on a clock the test moves (no waiting, no timing)."""
    clock = FakeClock()
    throttle = LocalSignInThrottle(max_buckets=max_buckets, clock=clock)
    stack.gateway.runner.app[RUNTIME].sign_in_throttle = throttle
    return throttle, clock


@asynccontextmanager
async def browser_from(stack: Stack, host: str) -> AsyncIterator[Browser]:
    """A browser whose connections come from another loopback address (another client address)."""
    other = Browser(stack.gateway.url)
    await other.http.close()
    other.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(host, 0)),
                                       cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        yield other
    finally:
        await other.close()


async def test_login_attempts_are_slowed_with_a_growing_wait(console_stack: Stack, browser: Browser) -> None:
    _, clock = frozen_throttle(console_stack)
    for _ in range(5):
        assert (await browser.login(OFFICER, "wrong password")).status == 401
    waits = []
    for _ in range(3):
        throttled = await browser.login(OFFICER, PASSWORD)  # even the right password waits: it is not checked
        assert throttled.status == 429 and "Trop de tentatives de connexion" in throttled.text
        waits.append(int(throttled.headers["Retry-After"]))
        clock.now += waits[-1]
        assert (await browser.login(OFFICER, "wrong password")).status == 401
    assert waits == [1, 2, 4], "the wait doubles with each attempt past the free ones"
    assert browser.cookie(SESSION_COOKIE) is None
    clock.now += 8
    assert (await browser.login(OFFICER, PASSWORD)).url.endswith("/console/search"), "a wait, never a lockout"
    throttled_entries = await logged(console_stack, outcome="rate_limited", path="/console/login")
    assert [e["detail"]["retry_after_s"] for e in throttled_entries] == [1, 2, 4]  # type: ignore[index]


async def test_an_attacker_elsewhere_cannot_lock_the_officer_out(console_stack: Stack, browser: Browser) -> None:
    """From a second address, an attacker guesses the officer's password for an hour as fast as the throttle
    lets it; the officer, from their own address, signs in at once all the same — and the guessing was slow."""
    _, clock = frozen_throttle(console_stack)
    started = clock.now
    checked = refused = 0
    async with browser_from(console_stack, "127.0.0.2") as attacker:
        await attacker.get("/console/login")
        while clock.now < started + 3600:
            seen = await attacker.post("/console/login", {"officer": OFFICER, "password": f"guess-{checked}"})
            if seen.status == 429:
                refused += 1
                clock.now += int(seen.headers["Retry-After"])
            else:
                assert seen.status == 401
                checked += 1
    assert checked < 5 + 10 + 4 * 15, f"{checked} passwords checked in an hour: guessing is slowed"
    assert refused >= 10
    assert (await browser.login(OFFICER, PASSWORD)).url.endswith("/console/search")
    [login] = await logged(console_stack, outcome="console_login")
    assert login["client"] == OFFICER


async def test_made_up_officer_ids_from_one_address_share_one_count(console_stack: Stack, browser: Browser) -> None:
    """Made-up ids create no count of their own: from one address they all wait on one (unknown id, address)
    count; the officer's address is untouched."""
    throttle, _ = frozen_throttle(console_stack)
    async with browser_from(console_stack, "127.0.0.2") as attacker:
        await attacker.get("/console/login")
        statuses = [(await attacker.post("/console/login", {"officer": f"fake-{i}", "password": "x"})).status
                    for i in range(60)]
    assert statuses == [401] * 5 + [429] * 55
    assert len(throttle) == 2  # (every made-up id, that address) and the address
    assert (await browser.login(OFFICER, PASSWORD)).url.endswith("/console/search")
    throttled = [e for e in await logged(console_stack, outcome="rate_limited") if e["path"] == "/console/login"]
    assert len(throttled) == 55 and all("officer" not in e["detail"] for e in throttled)  # type: ignore[operator]


async def test_a_sign_in_flood_is_bounded_and_never_locks_anyone_out(console_stack: Stack, browser: Browser) -> None:
    """Sign-in attempts from ever more addresses fill the sign-in throttle up to its cap and no further: the least
    recent counts are forgotten, so the officer still signs in; the API clients' buckets live apart."""
    throttle, _ = frozen_throttle(console_stack, max_buckets=4)
    api_buckets = len(console_stack.gateway.runner.app[RUNTIME].limiter)
    statuses = []
    for host in range(2, 9):
        async with browser_from(console_stack, f"127.0.0.{host}") as flooder:
            await flooder.get("/console/login")
            statuses.append((await flooder.post("/console/login", {"officer": OFFICER, "password": "x"})).status)
            assert len(throttle) <= 4
    assert statuses == [401] * 7
    assert (await browser.login(OFFICER, PASSWORD)).url.endswith("/console/search")
    assert len(throttle) <= 4
    await verify_fixture(console_stack)  # the API clients are admitted as ever
    assert len(console_stack.gateway.runner.app[RUNTIME].limiter) == api_buckets + 1


async def test_under_tls_the_session_cookie_is_secure(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    settings = with_officer(load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state")}))
    context = server_ssl_context(pki.server.cert, pki.server.key, None, require_client_cert=False)
    async with gateway_running(settings, port=0, ssl_context=context) as gw:
        assert gw.url.startswith("https://")
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(pki.ca))
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(gw.url + "/console/login") as response:
                token = CSRF.search(await response.text())
                assert token and "Secure" in response.headers["Set-Cookie"]
            async with http.post(gw.url + "/console/login", allow_redirects=False, data={
                    "officer": OFFICER, "password": PASSWORD, "csrf": token.group(1)}) as response:
                assert response.status == 303
                cookie = next(c for c in response.headers.getall("Set-Cookie") if c.startswith(SESSION_COOKIE))
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            async with http.get(gw.url + "/console/search") as response:
                assert response.status == 200 and OFFICER in await response.text()


async def test_the_dev_password_is_generated_kept_and_announced(tmp_path: Path) -> None:
    from gateway.console import banner

    async with build_stack(tmp_path) as stack:
        path = dev_password_path(stack.settings.state_dir, OFFICER)
        password = path.read_text().strip()
        lines = banner(stack.gateway.runner.app, stack.gateway.url)
        assert lines[0] == f"officers' console: {stack.gateway.url}/console"
        assert f"officer '{OFFICER}', password '{password}'" in lines[1]
        b = Browser(stack.gateway.url)
        try:
            assert (await b.login(OFFICER, password)).url.endswith("/console/search")
        finally:
            await b.close()


# --- sessions and forms -----------------------------------------------------------------------------------------------


async def test_forged_and_expired_sessions_go_back_to_the_login_page(console_stack: Stack,
                                                                     browser: Browser) -> None:
    await browser.login()
    good = browser.cookie(SESSION_COOKIE)
    assert good
    key = load_session_key(None, console_stack.settings.state_dir)
    stale = SessionCodec(key, idle_s=1800, max_s=36000, clock=lambda: time.time() - 1801)
    hash_ = console_stack.settings.clients[OFFICER].console_password_hash
    assert hash_
    for cookie in (good[:-3] + "AAA", stale.encode(stale.open(OFFICER, hash_)),
                   SessionCodec(bytes(32), idle_s=60, max_s=60).encode(stale.open(OFFICER, hash_))):
        browser.http.cookie_jar.clear()
        browser.http.cookie_jar.update_cookies({SESSION_COOKIE: cookie}, URL(browser.base))
        seen = await browser.get("/console/integrity", follow=False)
        assert seen.status == 303 and seen.headers["Location"].startswith("/console/login?expired=1")
    required = await logged(console_stack, outcome="console_login_required")
    assert len(required) == 3 and all(e["client"] is None for e in required)
    # a form sent with an expired session goes back to the page it was sent from
    async with browser.http.post(browser.base + "/console/integrity/verify", data={"csrf": "x"},
                                 allow_redirects=False) as sent:
        assert sent.status == 303
        assert sent.headers["Location"] == "/console/login?expired=1&next=%2Fconsole%2Fintegrity"
    browser.http.cookie_jar.clear()
    browser.http.cookie_jar.update_cookies({SESSION_COOKIE: good}, URL(browser.base))
    assert (await browser.get("/console/integrity", follow=False)).status == 200  # the genuine one still works


async def test_a_malformed_cookie_is_no_session_and_no_login_token(console_stack: Stack) -> None:
    base = console_stack.gateway.url
    async with aiohttp.ClientSession() as http:  # cookies as sent by hand: no jar to tidy them up
        for value in ("é.x", "\u0634.\u0634", "x" * 3000, "a.b.c"):
            async with http.get(base + "/console/search", allow_redirects=False,
                                headers={"Cookie": f"{SESSION_COOKIE}={value}"}) as response:
                assert response.status == 303, value
                assert response.headers["Location"].startswith("/console/login?expired=1")
        async with http.get(base + "/console/login") as response:
            token = CSRF.search(await response.text())
            assert token is not None
        async with http.post(base + "/console/login", allow_redirects=False, data={
                "officer": OFFICER, "password": PASSWORD, "csrf": token.group(1)},
                headers={"Cookie": f"{LOGIN_COOKIE}=é.x"}) as response:
            assert response.status == 403 and "Le formulaire a expiré" in await response.text()
    assert len(await logged(console_stack, outcome="console_login_required")) == 4
    [refused] = await logged(console_stack, outcome="console_csrf_failed")
    assert refused["status"] == 403 and refused["path"] == "/console/login"
    assert entries_with(console_stack, outcome="internal_error") == []


async def test_every_form_needs_its_token(console_stack: Stack, browser: Browser) -> None:
    await browser.get("/console/login")
    no_token = await browser.post("/console/login", {"officer": OFFICER, "password": PASSWORD, "csrf": "forged"})
    assert no_token.status == 403 and "Le formulaire a expiré" in no_token.text
    await browser.login()
    for path in ("/console/search", "/console/logout", "/console/integrity/verify"):
        refused = await browser.post(path, {"csrf": "forged"})
        assert refused.status == 403 and "<html" in refused.text and "Le formulaire a expiré" in refused.text, path
    refusals = await logged(console_stack, outcome="console_csrf_failed")
    assert [e["client"] for e in refusals] == [None, OFFICER, OFFICER, OFFICER]
    assert (await browser.get("/console/search")).status == 200  # still signed in


async def test_a_non_ascii_form_token_is_a_403_over_http(console_stack: Stack, browser: Browser) -> None:
    """Issue 9 §8: a non-ASCII CSRF or login token was a 500; it is the ordinary 403 refusal."""
    await browser.get("/console/login")
    for value in ("é" * 43, "☃"):
        refused = await browser.post("/console/login", {"officer": OFFICER, "password": PASSWORD, "csrf": value})
        assert refused.status == 403 and "Le formulaire a expiré" in refused.text, value
    await browser.login()
    refused = await browser.post("/console/search", {"csrf": "é" * 32})
    assert refused.status == 403 and "Le formulaire a expiré" in refused.text
    assert len(await logged(console_stack, outcome="console_csrf_failed")) == 3
    assert entries_with(console_stack, outcome="internal_error") == []


async def test_errors_are_html_pages_and_logged(console_stack: Stack, browser: Browser) -> None:
    await browser.login()
    missing = await browser.get("/console/entries/999999")
    assert missing.status == 404 and "Cette page n'existe pas." in missing.text.replace("&#39;", "'")
    nowhere = await browser.get("/console/nowhere")
    assert nowhere.status == 404 and missing.headers["Content-Type"].startswith("text/html")
    wrong_type = await browser.http.post(browser.base + "/console/search", json={"csrf": "x"})
    assert wrong_type.status == 415 and (await wrong_type.text()).startswith("<!doctype html>")
    [gone] = await logged(console_stack, path="/console/entries/999999")
    assert gone["client"] == OFFICER and gone["outcome"] == "not_found"
    for name, value in (("Content-Security-Policy", "default-src 'none'"), ("X-Frame-Options", "DENY"),
                        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")):
        assert value in missing.headers[name]


# --- languages --------------------------------------------------------------------------------------------------------


async def test_french_by_default_english_on_request(console_stack: Stack) -> None:
    b = Browser(console_stack.gateway.url, headers={"Accept-Language": "ar-MA,ar;q=0.9"})
    try:
        page = await b.get("/console/login")
        assert '<html lang="fr">' in page.text and "<h1>Connexion</h1>" in page.text
        page = await b.get("/console/login?lang=en")
        assert '<html lang="en">' in page.text and "<h1>Sign in</h1>" in page.text
        assert '<html lang="en">' in (await b.get("/console/login")).text  # remembered
        assert '<html lang="fr">' in (await b.get("/console/login?lang=fr")).text
    finally:
        await b.close()
    english = Browser(console_stack.gateway.url, headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    try:
        assert "<h1>Sign in</h1>" in (await english.get("/console/login")).text
    finally:
        await english.close()


# --- search, entry, integrity, anomalies ------------------------------------------------------------------------------


async def test_search_by_citizen_logs_the_pseudonym_never_the_identifier(console_stack: Stack,
                                                                         browser: Browser) -> None:
    idcs = await verify_fixture(console_stack, "DOSSIER-SEARCH")
    await browser.login()
    seen = await browser.post("/console/search", {"citizen_kind": "idcs", "citizen": idcs, "client": "anss.asd"})
    assert seen.status == 200 and "DOSSIER-SEARCH" in seen.text
    indices = re.findall(r'href="/console/entries/(\d+)"', seen.text)
    assert len(indices) == 1
    pseudonym = console_stack.gateway.runner.app[RUNTIME].pseudonymiser.pseudonym("idcs", idcs)
    [search] = await logged(console_stack, outcome="console_search")
    assert search["client"] == OFFICER and search["subject"] == pseudonym
    assert search["detail"]["filters"] == {  # type: ignore[index]
        "client": "anss.asd", "subject": pseudonym, "subject_kind": "idcs", "limit": 50}
    assert idcs.encode() not in raw_log(console_stack)
    nothing = await browser.post("/console/search", {"citizen": "zz98765q"})
    assert nothing.status == 400 and "Filtre invalide" in nothing.text
    [refused] = await logged(console_stack, outcome="invalid_request", path="/console/search")
    raw = raw_log(console_stack)
    assert refused["client"] == OFFICER and b"zz98765q" not in raw and b"ZZ98765Q" not in raw


@pytest.mark.parametrize("fields", [
    {"cursor": "99999999999999999999"}, {"cursor": "9223372036854775808"}, {"cursor": "1000000000000000000"},
    {"cursor": "\u0661\u0662"}, {"cursor": "-1"}, {"since": "0001-01-01T00:00:00+01:00"},
    {"until": "9999-12-31T23:30:00-01:00"}, {"since": "0001-01-01T00:00:00+14:00", "until": "2026-01-01T00:00"},
])
async def test_hostile_filters_are_refused_and_logged(console_stack: Stack, browser: Browser,
                                                      fields: dict[str, str]) -> None:
    await browser.login()
    seen = await browser.post("/console/search", fields)
    assert seen.status == 400 and "Filtre invalide" in seen.text
    [refused] = await logged(console_stack, outcome="invalid_request", path="/console/search")
    assert refused["client"] == OFFICER and refused["status"] == 400
    assert (await browser.post("/console/search", {"cursor": "999999999999999999"})).status == 200  # 18 digits


async def test_results_come_a_page_at_a_time(console_stack: Stack, browser: Browser) -> None:
    async with browser.http.post(console_stack.gateway.url + "/v1/verifications") as response:
        assert response.status == 401
    for _ in range(59):
        async with browser.http.post(console_stack.gateway.url + "/v1/verifications"):
            pass
    await browser.login()
    first = await browser.post("/console/search", {"outcome": "unauthenticated"})
    assert len(re.findall(r'href="/console/entries/(\d+)"', first.text)) == 50
    second = await browser.post("/console/search", {
        name: value for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">',
                                                  first.text.split('class="pager"')[1])})
    rows = re.findall(r'href="/console/entries/(\d+)"', second.text)
    assert len(rows) == 10 and "Page suivante" not in second.text


async def wait_verified(browser: Browser, index: str) -> Seen:
    for _ in range(100):
        seen = await browser.get(f"/console/entries/{index}")
        if "Vérifiée" in seen.text:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"entry {index} never showed a verified inclusion proof")


async def test_an_entry_shows_its_verified_inclusion_proof(console_stack: Stack, browser: Browser) -> None:
    await verify_fixture(console_stack, "DOSSIER-PROOF")
    await browser.login()
    seen = await browser.post("/console/search", {"case_ref": "DOSSIER-PROOF"})
    [index] = re.findall(r'href="/console/entries/(\d+)"', seen.text)
    entry = await wait_verified(browser, index)
    assert "cette entrée est incluse dans l&#39;arbre" in entry.text and "DOSSIER-PROOF" in entry.text
    assert "asd.eligibility" in entry.text and "Loi n° 58-23" in entry.text
    shown = await logged(console_stack, outcome="console_entry_shown")
    assert {e["detail"]["entry"] for e in shown} == {int(index)}  # type: ignore[index]


async def test_integrity_panel_and_verify_now(console_stack: Stack, browser: Browser) -> None:
    await verify_fixture(console_stack)
    await browser.login()
    await asyncio.sleep(0.8)  # a tree head is signed within half a second
    panel = await browser.get("/console/integrity")
    assert "Dernière tête d&#39;arbre signée" in panel.text and "✔ valide" in panel.text
    assert "Aucune vérification complète" in panel.text
    verified = await browser.post("/console/integrity/verify", {})
    assert "Journal intact" in verified.text
    [entry] = await logged(console_stack, outcome="audit_verification")
    assert entry["client"] == OFFICER and entry["detail"]["result"] == "intact"  # type: ignore[index]
    again = await browser.get("/console/integrity")
    assert f"par {OFFICER}" in again.text
    # the officers' API reads the same record back: one "last verification", wherever it was run
    last = await last_verification(console_stack.gateway.runner.app[RUNTIME].access_log)
    assert last is not None and last["verified_by"] == OFFICER and last["result"] == "intact"


async def test_flagged_anomalies_are_explained_and_link_to_their_entries(console_stack: Stack,
                                                                         browser: Browser) -> None:
    idcs = console_stack.population.fixture("child_out_of_school").father.idcs
    async with console_stack.client_for("mhpv.housing") as housing:
        for i in range(10):  # a purpose it has no right to: ten refusals within seconds
            answer = await housing.verify({"idcs": idcs}, "asd.eligibility", f"PROBE-{i}", ["identity"])
            assert answer.status == 403
    await browser.login()
    page = await browser.get("/console/anomalies")
    assert "Rafale de refus" in page.text and "mhpv.housing a essuyé 10 refus" in page.text
    linked = re.findall(r'href="/console/entries/(\d+)"', page.text.split("Rafale de refus")[1])
    refused = entries_with(console_stack, client="mhpv.housing", outcome="forbidden_purpose")
    assert len(refused) == 10 and len(linked) >= 10
    english = await browser.get("/console/anomalies?lang=en")
    assert "Burst of refusals" in english.text and "mhpv.housing was refused 10 times" in english.text
    shown = await logged(console_stack, outcome="console_anomalies_shown")
    assert shown[0]["detail"]["flags"] >= 1  # type: ignore[index,operator]


async def test_refusals_without_credentials_are_flagged_for_officers(tmp_path: Path) -> None:
    def adjust(settings: Settings) -> Settings:
        return with_officer(replace(settings, anomalies=replace(settings.anomalies, anonymous_refusals=20)))

    async with build_stack(tmp_path, adjust) as stack:
        async with aiohttp.ClientSession() as http:
            for _ in range(25):  # no client assertion at all: refused before anyone is known
                async with http.post(stack.gateway.url + "/v1/verifications", json={}) as response:
                    assert response.status == 401
        async with stack.client_for(OFFICER) as officer:
            answer = await officer.request("GET", "/v1/audit/anomalies")
        document = check_against_openapi(answer, "get", "/v1/audit/anomalies")
        [flag] = [f for f in document["flags"] if f["kind"] == "anonymous_refusals"]
        assert flag["clients"] == [] and flag["count"] == 25 and '"unauthenticated"' in flag["explanation"]["en"]
        assert document["complete"] and document["truncated"] == {"clients": [], "unattributed": False}
        b = Browser(stack.gateway.url)
        try:
            await b.login()
            page = await b.get("/console/anomalies")
        finally:
            await b.close()
        assert "Refus sans client identifié" in page.text and "25 requêtes sans client identifié" in page.text
        assert f'href="/console/entries/{flag["entries"][0]}"' in page.text


@pytest.fixture
async def plain_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with build_stack(tmp_path) as built:
        yield built


async def test_the_anomalies_api_is_for_officers_only(plain_stack: Stack) -> None:
    async with plain_stack.client_for(OFFICER) as officer:
        answer = await officer.request("GET", "/v1/audit/anomalies")
        assert answer.status == 200
        document = answer.json()
        assert document["flags"] == [] and document["complete"] is True and document["window"]["baseline_days"] == 14
        assert answer.signature_header is not None
    refused = await plain_stack.client.request("GET", "/v1/audit/anomalies")
    assert refused.status == 403 and refused.json()["code"] == "forbidden_role"
    listed = await logged(plain_stack, outcome="audit_anomalies_listed")
    assert listed[0]["client"] == OFFICER
