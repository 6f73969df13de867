"""The officers' console in a real browser: Debian's Chromium (``/usr/bin/chromium``), headless, driven by
Playwright for Python — never a downloaded browser.

A real gateway in front of the four simulators gets real traffic: a verification, then a client probing a
purpose it has no right to until the refusals make a burst. In the browser an officer, whose browser asks for
neither French nor English, gets the French pages, signs in, searches by the citizen's identifier, opens the
entry and sees its inclusion proof verified, sees the flagged burst with its explanation and follows it to a
refused entry, switches to English, and signs out. The browser fetches nothing outside the gateway.

Without Chromium (or Playwright) the test is skipped with the reason — except under CI (``CI=true``), where
it fails: ``.ci/run`` installs the Debian package ``chromium`` first.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.batch.test_batches import submit, upload, wait_done
from tests.console.conftest import OFFICER, PASSWORD, with_officer
from tests.gateway.conftest import Stack, build_stack
from tests.officers.conftest import stored_entries

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"


def browser_or_skip() -> None:
    missing = None
    if not CHROMIUM.exists():
        missing = f"no Chromium at {CHROMIUM} (the Debian package `chromium`)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "Playwright for Python is not installed (pip install -e '.[test]')"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing}: under CI the console's browser test must run (.ci/run installs chromium)")
    pytest.skip(f"{missing}: the console's real-browser test is skipped")


@pytest.fixture
async def traffic(tmp_path: Path) -> AsyncIterator[tuple[Stack, str]]:
    browser_or_skip()
    async with build_stack(tmp_path, with_officer) as stack:
        idcs = stack.population.fixture("child_out_of_school").father.idcs
        answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", "DOSSIER-BROWSER", ["identity"])
        assert answer.status == 200
        async with stack.client_for("mhpv.housing") as housing:
            for i in range(10):  # a purpose it has no right to, ten times within seconds
                refused = await housing.verify({"idcs": idcs}, "asd.eligibility", f"PROBE-{i}", ["identity"])
                assert refused.status == 403
        yield stack, idcs


async def test_an_officer_uses_the_console_in_a_real_browser(traffic: tuple[Stack, str]) -> None:
    from playwright.async_api import async_playwright, expect

    stack, idcs = traffic
    base = stack.gateway.url
    requested: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context(locale="ar-MA")  # asks for neither French nor English
            page = await context.new_page()
            page.on("request", lambda request: requested.append(request.url))

            # French by default; the login page is reached from the console's address
            await page.goto(f"{base}/console")
            assert await page.get_attribute("html", "lang") == "fr"
            await expect(page.get_by_role("heading", level=1)).to_have_text("Connexion")
            await page.get_by_label("Identifiant d'officier").fill(OFFICER)
            await page.get_by_label("Mot de passe").fill(PASSWORD)
            await page.get_by_role("button", name="Se connecter").click()
            await expect(page).to_have_url(f"{base}/console/search")
            await expect(page.get_by_role("banner")).to_contain_text(f"Connecté en tant que {OFFICER}")
            await check_accessibility(page)

            # search by the citizen's identifier, open the entry, see its inclusion proof verified
            await page.get_by_label("Identifiant du citoyen").fill(idcs)
            await page.get_by_label("Client", exact=True).select_option("anss.asd")
            await page.get_by_role("button", name="Rechercher").click()
            rows = page.locator("table.entries tbody tr")
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_contain_text("DOSSIER-BROWSER")
            await rows.first.get_by_role("link").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Entrée n° \d+$"))
            await expect(page.locator("dl.fields")).to_contain_text("DOSSIER-BROWSER")
            for _ in range(40):  # a tree head is signed within half a second
                if "Vérifiée" in await page.locator("section.proof").inner_text():
                    break
                await page.wait_for_timeout(100)
                await page.reload()
            await expect(page.locator("section.proof")).to_contain_text("Vérifiée : cette entrée est incluse")
            await check_accessibility(page)

            # the flagged burst of refusals, explained, leading to a refused entry
            await page.get_by_role("link", name="Alertes").click()
            flag = page.locator("li.flag", has_text="Rafale de refus")
            await expect(flag).to_contain_text("mhpv.housing a essuyé 10 refus")
            await expect(flag).to_contain_text("« forbidden_purpose »")
            await check_accessibility(page)
            await flag.get_by_role("link").first.click()
            await expect(page.locator("dl.fields")).to_contain_text("forbidden_purpose")
            await expect(page.locator("dl.fields")).to_contain_text("mhpv.housing")

            # English on request, and it stays
            await page.get_by_role("link", name="Switch to English").click()
            assert await page.get_attribute("html", "lang") == "en"
            await page.get_by_role("link", name="Anomalies").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Anomalies")
            await expect(page.locator("li.flag", has_text="Burst of refusals")).to_contain_text(
                "mhpv.housing was refused 10 times")

            # signing out
            await page.get_by_role("button", name="Sign out").click()
            await expect(page.get_by_role("status")).to_have_text("You are signed out.")
            await page.goto(f"{base}/console/search")
            await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        finally:
            await browser.close()

    assert requested and all(url.startswith(base + "/") for url in requested), "nothing from elsewhere"
    assert any(url.startswith(f"{base}/console/static/console.css") for url in requested)
    console = [e for e in stored_entries(stack) if str(e["path"]).startswith("/console")]
    searches = [e for e in console if e["outcome"] == "console_search"]
    assert len(searches) == 1 and searches[0]["client"] == OFFICER and searches[0]["subject"]
    assert {e["outcome"] for e in console} >= {"console_login", "console_entry_shown", "console_anomalies_shown",
                                                "console_logout", "console_login_required"}


@pytest.fixture
async def operations(tmp_path: Path) -> AsyncIterator[tuple[Stack, str]]:
    """Traffic for the dashboard: three answered verifications, four refusals of another client, one batch of
    three subjects run to its end."""
    browser_or_skip()
    async with build_stack(tmp_path, with_officer) as stack:
        idcs = stack.population.fixture("child_out_of_school").father.idcs
        for i in range(3):
            answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", f"DOSSIER-OPS-{i}", ["identity"])
            assert answer.status == 200
        async with stack.client_for("mhpv.housing") as housing:
            for i in range(4):
                assert (await housing.verify({"idcs": idcs}, "asd.eligibility", f"PROBE-{i}", ["identity"])).status \
                    == 403
        subjects = [{"idcs": stack.population.fixture(name).father.idcs}
                    for name in ("deceased_father", "child_out_of_school", "salaried_parent")]
        submitted = await submit(stack.client, upload(subjects))
        assert submitted.status == 202, submitted.text
        done = await wait_done(stack.client, submitted.json()["batch_id"])
        assert done["done"] + done["failed"] == 3
        yield stack, submitted.json()["batch_id"]


async def test_the_operations_dashboard_in_a_real_browser(operations: tuple[Stack, str], tmp_path: Path) -> None:
    """Signs in, opens the dashboard in French then in English, checks the charts' numbers and takes a screenshot;
    with ANSS_GATEWAY_UPDATE_SCREENSHOTS=1 it replaces the one the docs show (docs/images/dashboard.png), otherwise
    it goes to the test's temporary directory (a test run leaves the repository as it found it)."""
    from playwright.async_api import async_playwright, expect

    stack, batch_id = operations
    base = stack.gateway.url
    requested: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context(locale="fr-MA", viewport={"width": 1100, "height": 900})
            page = await context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(f"{base}/console/login")
            await page.get_by_label("Identifiant d'officier").fill(OFFICER)
            await page.get_by_label("Mot de passe").fill(PASSWORD)
            await page.get_by_role("button", name="Se connecter").click()
            await page.get_by_role("link", name="Tableau de bord").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Tableau de bord des opérations")
            clients = page.locator("svg#chart-clients")
            await expect(clients).to_be_visible()
            titles = await clients.locator("rect title").all_text_contents()
            assert "mhpv.housing : 0 répondues, 4 refusées, 0 en erreur" in titles, titles
            assert any(t.startswith("anss.asd : ") and t.endswith(" 0 refusées, 0 en erreur") for t in titles), titles
            answered = page.locator("#table-outcomes tr", has_text="anss.asd").filter(has_text="answered")
            await expect(answered.locator("td").last).to_have_text("6")  # 3 verifications and the batch's 3
            hours = await page.locator("svg#chart-hours rect title").all_text_contents()
            assert sum(int(re.search(r"(\d+) refusées", t).group(1)) for t in hours) >= 4  # type: ignore[union-attr]
            sources = await page.locator("svg#chart-sources rect title").all_text_contents()
            assert any(t.startswith("civil_registry : p99 ") for t in sources), sources
            row = page.locator("#table-sources tr", has_text="civil_registry")
            await expect(row.locator("td").first).to_have_text("6")  # 3 verifications + 3 batch subjects
            await expect(page.locator("#table-breakers")).to_contain_text("fermé (les appels passent)")
            batch = page.locator("#table-batches tr", has_text=batch_id)
            await expect(batch.locator("td").nth(3)).to_have_text("3")  # subjects
            await expect(page.locator(f"svg#chart-batch-{batch_id} rect title").first).to_have_text("3 faits")
            await check_accessibility(page)
            update = os.environ.get("ANSS_GATEWAY_UPDATE_SCREENSHOTS") == "1"
            shot = SCREENSHOT if update else tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000

            await page.get_by_role("link", name="Switch to English").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Operations dashboard")
            titles = await page.locator("svg#chart-clients rect title").all_text_contents()
            assert "mhpv.housing: 0 answered, 4 refused, 0 errors" in titles, titles
            await expect(page.locator("#table-breakers")).to_contain_text("closed (calls go through)")
            await check_accessibility(page)
        finally:
            await browser.close()
    assert requested and all(url.startswith(base + "/") for url in requested), "nothing from elsewhere"
    shown = [e for e in stored_entries(stack) if e["outcome"] == "console_dashboard_shown"]
    assert len(shown) == 2 and {e["client"] for e in shown} == {OFFICER}


async def check_accessibility(page: Any) -> None:
    """Landmarks, a label for every control, one h1, a language, and no inline style or script."""
    report = await page.evaluate("""() => ({
        unlabeled: [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.name),
        h1: document.querySelectorAll('h1').length,
        main: document.querySelectorAll('main').length,
        lang: document.documentElement.lang,
        scripts: document.querySelectorAll('script').length,
        inlineStyles: document.querySelectorAll('[style], style').length,
    })""")
    assert report == {"unlabeled": [], "h1": 1, "main": 1, "lang": report["lang"], "scripts": 0,
                      "inlineStyles": 0}, report
    assert report["lang"] in ("fr", "en")
    for role in ("banner", "main", "contentinfo"):
        assert await page.get_by_role(role).count() == 1, role


def test_without_chromium_the_test_skips_except_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no Chromium at .*the console's real-browser test is skipped"):
        browser_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI the console's browser test must run"):
        browser_or_skip()
