"""The operations dashboard over HTTP, against a real gateway and the simulators: the numbers of the traffic
logged, in its SVG charts (titles) and its tables, in both languages, under the console's strict CSP; a batch's
progress; a breaker's state; and the chart geometry on its own."""

from __future__ import annotations

import re
from html import unescape

import pytest

from gateway.console.charts import Segment, bars, columns, nice_max
from tests.console.conftest import Browser
from tests.gateway.conftest import Stack

TITLE = re.compile(r"<rect class=\"bar-(\w+)\"[^>]*><title>([^<]*)</title>")


async def traffic(stack: Stack) -> str:
    idcs = stack.population.fixture("child_out_of_school").father.idcs
    for i in range(3):
        answer = await stack.client.verify({"idcs": idcs}, "asd.eligibility", f"DOSSIER-DASH-{i}", ["identity"])
        assert answer.status == 200
    async with stack.client_for("mhpv.housing") as housing:
        for i in range(4):
            refused = await housing.verify({"idcs": idcs}, "asd.eligibility", f"PROBE-{i}", ["identity"])
            assert refused.status == 403
    return idcs


def table(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [[unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


async def test_the_dashboard_shows_the_traffic_logged(console_stack: Stack, browser: Browser) -> None:
    await traffic(console_stack)
    await browser.login()
    page = await browser.get("/console/dashboard?lang=en")
    assert page.status == 200, page.text
    assert "script" not in page.headers["Content-Security-Policy"] and " style=" not in page.text
    assert "<script" not in page.text
    outcomes = {(row[0], row[1]): int(row[2]) for row in table(page.text, "table-outcomes")[1:]}
    assert outcomes[("anss.asd", "answered")] == 3
    assert outcomes[("mhpv.housing", "forbidden_purpose")] == 4
    titles = [t for _, t in TITLE.findall(page.text)]
    assert "mhpv.housing: 0 answered, 4 refused, 0 errors" in titles
    assert any(t.startswith("anss.asd: 3 answered") for t in titles)
    assert sum(int(re.search(r": (\d+) answered", t).group(1))  # type: ignore[union-attr]
               for t in titles if t.startswith("anss.asd, ")) == 3, "the client's own hours add up"
    assert sum(int(row[2]) for row in table(page.text, "table-hours")[1:]) >= 4  # refused, per hour
    sources = {row[0]: row for row in table(page.text, "table-sources")[1:]}
    assert sources["civil_registry"][1] == "3" and sources["civil_registry"][2] == "0"
    assert any(t.startswith("civil_registry: p99 ") for t in titles)
    breakers = {row[0]: row[1] for row in table(page.text, "table-breakers")[1:]}
    assert breakers and set(breakers.values()) == {"closed (calls go through)"}
    french = await browser.get("/console/dashboard?lang=fr")
    assert "mhpv.housing : 0 répondues, 4 refusées, 0 en erreur" in french.text
    assert '<html lang="fr">' in french.text and "Tableau de bord des opérations" in french.text


def test_columns_stack_their_segments_under_a_round_maximum() -> None:
    chart = columns("c", "t", "d", ["a", "b"], [[Segment("ok", 30, "a ok"), Segment("refused", 10, "a r")],
                                              [Segment("ok", 0, "b ok")]], width=200, height=140)
    assert [r.title for r in chart.rects] == ["a ok", "a r"], "empty segments draw nothing"
    ok, refused = chart.rects
    assert refused.y + refused.height == pytest.approx(ok.y)
    assert ok.height == pytest.approx(3 * refused.height)
    assert nice_max(40) == 40 and nice_max(41) == 80 and nice_max(7) == 8 and nice_max(0) == 4
    assert [t.text for t in chart.texts if t.kind == "axis"][:5] == ["0", "10", "20", "30", "40"]


def test_grouped_bars_are_side_by_side() -> None:
    chart = bars("b", "t", "d", ["s"], [[Segment("p50", 10, "p50"), Segment("p99", 40, "p99")]], ["40 ms"],
                 grouped=True)
    p50, p99 = chart.rects
    assert p50.x == p99.x and p50.y < p99.y and p99.width == 4 * p50.width
