"""``anss-gateway demo``: simulators and gateway on free loopback ports, the fixture households verified as
the ANSS client, every answer's signature checked, a readable summary. Exits non-zero if anything failed."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from gateway.client import GatewayClient
from gateway.config.settings import Settings
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path
from gateway.web.runner import gateway_running, simulators_running
from simulators.population import FIXTURE_NAMES, Population

CLIENT_ID = "anss.asd"
PURPOSE = "asd.eligibility"

# What each fixture must show (see docs/fixtures.md); path into the response → expected value
EXPECTED: dict[str, dict[tuple[str, ...], Any]] = {
    "deceased_father": {("household", "father_deceased"): True},
    "child_out_of_school": {("schooling", "children_6_20_not_enrolled"): 1},
    "salaried_parent": {("employment", "salaried_work_declared"): True,
                        ("health_coverage", "scheme"): "amo_contributory"},
    "amo_tadamon": {("health_coverage", "amo_tadamon"): True, ("employment", "salaried_work_declared"): False},
    "disabled_child": {("schooling", "children_6_20_not_enrolled"): 0},
    "not_in_rsu": {("health_coverage", "scheme"): "none", ("schooling", "children_6_20_enrolled"): 1},
    "elderly_couple": {("household", "children_under_21"): 0, ("household", "children"): 1},
}
ALL_SOURCES = frozenset({"civil_registry", "education", "health", "employment"})
# The sources a fixture's verification asks, where not all: nobody of school age, so no MASSAR call
SOURCES: dict[str, frozenset[str]] = {"elderly_couple": ALL_SOURCES - {"education"}}


def _expectations_met(name: str, document: dict[str, Any]) -> list[str]:
    problems = []
    for (check, key), expected in EXPECTED.get(name, {}).items():
        actual = (document["checks"][check].get("verdict") or {}).get(key)
        if actual != expected:
            problems.append(f"{check}.{key} = {actual!r}, expected {expected!r}")
    if name == "disabled_child" and not document["checks"]["health_coverage"]["verdict"]["severe_disability"]:
        problems.append("health_coverage.severe_disability is empty")
    return problems


async def run_demo(settings: Settings, as_json: bool = False, state_dir: Path | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="anss-demo-") as tmp:
        settings = replace(settings, host="127.0.0.1", state_dir=state_dir or Path(tmp),
                           audit_database=(state_dir or Path(tmp)) / "access-log.sqlite3")
        async with simulators_running(settings, free_ports=True) as sims:
            settings = settings.with_connector_urls(sims.urls)
            async with gateway_running(settings, port=0) as gw:
                key = keys.load_or_create(dev_client_key_path(settings.state_dir, CLIENT_ID))
                population = Population(settings.simulators.seed, settings.simulators.households)
                cases = []
                for name in FIXTURE_NAMES:  # ANSS asks about a household through its living head
                    household = population.fixture(name)
                    head = household.father if household.father.alive else household.mother
                    cases.append((name, head.idcs))
                cases.append(("unknown_identifier", population.unknown_idcs()))
                failures = 0
                async with GatewayClient(gw.url, CLIENT_ID, key, settings.gateway_id) as client:
                    for name, idcs in cases:
                        answer = await client.verify({"idcs": idcs}, PURPOSE, f"DEMO-{name}")
                        failures += _report(name, idcs, answer.status, answer.json(),
                                            answer.signature_header is not None, as_json)
                if not as_json:
                    print(f"\n{len(cases) - failures}/{len(cases)} fixture verifications as expected, "
                          f"every signature checked against {gw.url}/.well-known/jwks.json")
                return 1 if failures else 0


def _report(name: str, idcs: str, status: int, document: dict[str, Any], signed: bool, as_json: bool) -> int:
    problems: list[str] = [] if signed else ["response signature does not verify"]
    if name == "unknown_identifier":
        if status != 404 or document.get("code") != "subject_not_found":
            problems.append(f"expected 404 subject_not_found, got {status}")
        sources: list[dict[str, Any]] = []
        checks: dict[str, Any] = {}
    else:
        if status != 200:
            problems.append(f"HTTP {status}: {document.get('code')}")
            sources, checks = [], {}
        else:
            sources = document["sources"]
            checks = document["checks"]
            problems += [f"source {s['name']} is {s['status']}" for s in sources if s["status"] != "ok"]
            expected = SOURCES.get(name, ALL_SOURCES)
            if {s["name"] for s in sources} != expected:
                problems.append(f"sources {sorted(s['name'] for s in sources)} answered, expected {sorted(expected)}")
            problems += _expectations_met(name, document)
    if as_json:
        print(orjson.dumps({
            "fixture": name, "subject": {"idcs": idcs}, "status": status, "signature_valid": signed,
            "checks": {c: {"status": r["status"], "verdict": r["verdict"]} for c, r in checks.items()},
            "sources": [{"name": s["name"], "status": s["status"]} for s in sources],
            "ok": not problems, "problems": problems,
        }).decode())
    else:
        mark = "ok " if not problems else "FAIL"
        print(f"[{mark}] {name:<20} idcs={idcs} HTTP {status} signature={'valid' if signed else 'INVALID'}")
        for check, result in checks.items():
            print(f"        {check:<16} {result['status']:<11} {_summary(check, result.get('verdict'))}")
        if sources:
            print("        sources: " + ", ".join(f"{s['name']}={s['status']}" for s in sources))
        for problem in problems:
            print(f"        ! {problem}")
    return 1 if problems else 0


def _summary(check: str, verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return ""
    if check == "identity":
        return f"alive={verdict['alive']} age={verdict['age']}"
    if check == "household":
        return (f"father_deceased={verdict['father_deceased']} children_under_21={verdict['children_under_21']} "
                f"members_alive={verdict['members_alive']}")
    if check == "schooling":
        return (f"children 6–20: {verdict['children_6_20']}, enrolled {verdict['children_6_20_enrolled']}, "
                f"not enrolled {verdict['children_6_20_not_enrolled']}")
    if check == "health_coverage":
        return (f"scheme={verdict['scheme']} active={verdict['active']} "
                f"severe_disability={len(verdict['severe_disability'])}")
    return f"salaried work declared {verdict['period']['from']}..{verdict['period']['to']}: " \
           f"{verdict['salaried_work_declared']}"
