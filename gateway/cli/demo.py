"""``anss-gateway demo``: simulators and gateway on free loopback ports, the fixture households verified as
the ANSS client, every answer's signature checked, a readable summary. Exits non-zero if anything failed."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from gateway.client import GatewayClient
from gateway.config.settings import Settings
from gateway.crypto import keys
from gateway.crypto.keyring import dev_client_key_path
from gateway.federation.checks.registry import CheckRegistry
from gateway.web.runner import RunningGateway, gateway_running, simulators_running
from gateway.web.state import RUNTIME
from simulators.population import FIXTURE_NAMES, Population

CLIENT_ID = "anss.asd"
PURPOSE = "asd.eligibility"

# What each fixture must show (see docs/fixtures.md); path into the response → expected value
EXPECTED: dict[str, dict[tuple[str, ...], Any]] = {
    "deceased_father": {("household", "father_deceased"): True, ("asd_entitlement", "eligible"): True},
    "child_out_of_school": {("schooling", "children_6_20_not_enrolled"): 1},
    "salaried_parent": {("employment", "salaried_work_declared"): True,
                        ("health_coverage", "scheme"): "amo_contributory",
                        ("social_registry", "below_asd_threshold"): False,
                        ("asd_entitlement", "reasons"): ["index_above_threshold", "salaried_parent"]},
    "amo_tadamon": {("health_coverage", "amo_tadamon"): True, ("employment", "salaried_work_declared"): False,
                    ("social_registry", "below_amo_tadamon_threshold"): True},
    "disabled_child": {("schooling", "children_6_20_not_enrolled"): 0},
    "not_in_rsu": {("health_coverage", "scheme"): "none", ("schooling", "children_6_20_enrolled"): 1,
                   ("social_registry", "registered"): False, ("asd_entitlement", "reasons"): ["not_registered"]},
    "elderly_couple": {("household", "children_under_21"): 0, ("household", "children"): 1,
                       ("social_registry", "below_asd_threshold"): True,
                       ("social_registry", "below_amo_tadamon_threshold"): False,
                       ("asd_entitlement", "monthly_amount_mad"): 500},
    "seven_children": {("schooling", "children_6_20_not_enrolled"): 2,
                       ("asd_entitlement", "eligible"): True},
    "newborn": {("household", "children_under_21"): 2, ("asd_entitlement", "eligible"): True},
    "above_threshold": {("social_registry", "below_asd_threshold"): False,
                        ("asd_entitlement", "reasons"): ["index_above_threshold"]},
}
# The administrations the purpose's checks may need (their ``operations``) that a fixture's verification does
# not ask: nobody of school age, so no MASSAR call
NOT_ASKED: dict[str, frozenset[str]] = {"elderly_couple": frozenset({"education"}), "newborn": frozenset({"education"})}


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
                report = Report(settings.checks, _sources_needed(settings, gw), as_json)
                async with GatewayClient(gw.url, CLIENT_ID, key, settings.gateway_id) as client:
                    for name, idcs in cases:
                        answer = await client.verify({"idcs": idcs}, PURPOSE, f"DEMO-{name}")
                        failures += report(name, idcs, answer.status, answer.json(),
                                           answer.signature_header is not None)
                if not as_json:
                    print(f"\n{len(cases) - failures}/{len(cases)} fixture verifications as expected, "
                          f"every signature checked against {gw.url}/.well-known/jwks.json")
                return 1 if failures else 0


def _sources_needed(settings: Settings, gw: RunningGateway) -> list[str]:
    """The administrations the purpose's checks ask (the checks' ``operations``, routed as the gateway does)."""
    routes = gw.runner.app[RUNTIME].federation.routes
    return sorted({routes[op].name for check in settings.purposes[PURPOSE].checks
                   for op in settings.checks.operations[check] if op in routes})


@dataclass(frozen=True)
class Report:
    """Prints one fixture's answer and what is wrong with it; the summaries are the checks' own."""

    checks: CheckRegistry
    sources_needed: list[str]
    as_json: bool

    def __call__(self, name: str, idcs: str, status: int, document: dict[str, Any], signed: bool) -> int:
        return _report(self, name, idcs, status, document, signed)


def _report(how: Report, name: str, idcs: str, status: int, document: dict[str, Any], signed: bool) -> int:
    as_json = how.as_json
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
            expected = sorted(set(how.sources_needed) - NOT_ASKED.get(name, frozenset()))
            answered = sorted(s["name"] for s in sources)
            if answered != expected:
                problems.append(f"sources {answered} answered, expected {expected}")
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
            verdict = result.get("verdict")
            summary = how.checks[check].summary(verdict) if verdict and check in how.checks else ""
            print(f"        {check:<16} {result['status']:<11} {summary}")
        if sources:
            print("        sources: " + ", ".join(f"{s['name']}={s['status']}" for s in sources))
        for problem in problems:
            print(f"        ! {problem}")
    return 1 if problems else 0
