"""Third-party checks, installed as a real distribution (a ``.dist-info`` with ``entry_points.txt`` on
``sys.path``): they join the vocabulary everywhere (config, schemas served and enforced, labels, console)
and run through the same executor; a clash or a broken entry point stops the start-up with one line."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from connectors.base import Record
from gateway.api import contract
from gateway.config.settings import ConfigError, Settings, load
from gateway.console.filters import choices
from gateway.federation.calendar import age_on
from gateway.federation.checks.protocol import Operation, answered, fact
from gateway.federation.checks.registry import CheckRegistry, CheckRegistryError, builtin, discover
from gateway.federation.evidence import Evidence
from gateway.federation.plan import next_round
from gateway.web.state import RUNTIME
from tests.gateway.conftest import build_stack

ROOT = Path(__file__).resolve().parents[2]
PURPOSE = "asd.eligibility"

PLUGIN = '''
"""A third-party check: how many living children of the subject are adults (21 or more)."""
from connectors.base import Record
from gateway.federation.checks.protocol import Operation, answered, fact, unavailable
from gateway.federation.checks import rules


class AdultChildren:
    name = "{name}"
    facts = frozenset({{"adult_child"}})
    labels = {{"fr": "Enfants majeurs", "en": "Adult children"}}
    operations = frozenset({{"family"}})
    verdict_schema = {{"type": "object", "additionalProperties": False, "required": ["adult_children"],
                      "properties": {{"adult_children": {{"type": "integer", "minimum": 0}}}}}}

    def plan(self, known):
        if known.subject_idcs:
            yield Operation("family", {{"idcs": known.subject_idcs}})

    def evaluate(self, evidence):
        family = evidence.record("family", evidence.subject_idcs)
        if family is None:
            return unavailable("civil_registry")
        adults = [c for c, age in rules.living_children(family.data, evidence.today) if not rules.is_child(age)]
        return answered({{"adult_children": len(adults)}},
                        [fact("adult_child", True, c["idcs"], family) for c in adults], [])

    def summary(self, verdict):
        return f"adult children: {{verdict['adult_children']}}"


def make():
    return AdultChildren()


def nothing():
    return object()
'''


def install(site: Path, module: str, entry_points: str, name: str = "adult_children") -> None:
    """A distribution ``module`` (its package and its ``.dist-info``) under ``site``."""
    package = site / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN.format(name=name), encoding="utf-8")
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")


def config_granting(tmp_path: Path, check: str) -> Path:
    """config/ where the ASD purpose and the ANSS client's right include ``check``."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    old = '"social_registry", "asd_entitlement"]'
    for file in ("purposes.toml", "clients.toml"):
        path = config / file
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, f'"social_registry", "asd_entitlement", "{check}"]', 1),
                        encoding="utf-8")
    return config


def test_the_bundled_registry_is_the_built_ins() -> None:
    assert discover().names == ("identity", "household", "schooling", "health_coverage", "employment",
                                "social_registry", "asd_entitlement")


def test_the_static_schemas_are_what_the_built_in_registry_gives() -> None:
    for name in contract.FILL:
        on_disk = json.loads((contract.SCHEMAS / name).read_text(encoding="utf-8"))
        assert contract.document(name, builtin()) == on_disk, f"schemas/{name} differs from the check registry"


async def test_a_third_party_check_joins_the_vocabulary_and_runs(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", "anss_adult_children", """
        [anss_gateway.checks]
        adult_children = anss_adult_children:make
    """)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    config = config_granting(tmp_path, "adult_children")

    def with_plugin(settings: Settings) -> Settings:
        loaded = load(env={"ANSS_GATEWAY_CONFIG": str(config), "ANSS_GATEWAY_STATE_DIR": str(settings.state_dir)})
        return replace(settings, checks=loaded.checks, purposes=loaded.purposes, clients=loaded.clients)

    async with build_stack(tmp_path, with_plugin) as stack:
        assert stack.settings.checks.names[-1] == "adult_children"
        assert "adult_children" in choices(stack.settings)["checks"]
        assert stack.settings.checks.label("adult_children", "en") == "Adult children"
        access_log = stack.gateway.runner.app[RUNTIME].access_log
        logged = await access_log.count()
        async with aiohttp.ClientSession() as session:
            served: dict[str, Any] = {}
            for name in ("verification-request.json", "verification-response.json", "consent-request.json",
                         "audit-search-request.json", "openapi.json"):
                async with session.get(f"{stack.gateway.url}/schemas/{name}") as resp:
                    assert resp.status == 200, name
                    served[name] = await resp.json()
            async with session.get(f"{stack.gateway.url}/schemas/nothing.json") as resp:
                assert resp.status == 404
        assert await access_log.count() == logged, "the contract's documents are public and not logged"
        assert "adult_children" in served["verification-request.json"]["properties"]["checks"]["items"]["enum"]
        assert "adult_children" in served["consent-request.json"]["properties"]["checks"]["items"]["anyOf"][0]["enum"]
        assert "adult_children" in served["audit-search-request.json"]["properties"]["check"]["enum"]
        batch = next(p for p in served["openapi.json"]["paths"]["/v1/batches"]["post"]["parameters"]
                     if p["name"] == "check")
        assert "adult_children" in batch["schema"]["items"]["enum"]
        response_schema = served["verification-response.json"]
        assert "adult_children" in response_schema["properties"]["checks"]["properties"]

        household = next(stack.population.household(i) for i in range(5, 2000)
                         if stack.population.household(i).father.alive)
        today = datetime.now(UTC).date()
        adults = sum(1 for c in household.children if c.alive and age_on(c.birth_date, today) >= 21)
        answer = await stack.client.verify({"idcs": household.father.idcs}, PURPOSE, "CASE-PLUGIN-1",
                                           ["identity", "adult_children"])
        assert answer.status == 200, answer.json()
        document = answer.json()
        assert document["checks"]["adult_children"]["verdict"] == {"adult_children": adults}
        assert {s["name"]: s["calls"] for s in document["sources"]} == {"civil_registry": 2}
        errors = list(Draft202012Validator(response_schema).iter_errors(document))
        assert not errors, errors[0].message
        wrong = {**document, "checks": {"adult_children": {**document["checks"]["adult_children"],
                                                           "verdict": {"adult_children": "many"}}}}
        assert list(Draft202012Validator(response_schema).iter_errors(wrong)), "the check's verdict schema applies"


def test_duplicate_check_names_stop_the_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", "anss_identity_clash", """
        [anss_gateway.checks]
        my_identity = anss_identity_clash:make
    """, name="identity")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(CheckRegistryError) as failure:
        load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state")})
    message = str(failure.value)
    assert "\n" not in message and isinstance(failure.value, ConfigError)
    assert "anss_gateway.checks:my_identity" in message and "anss_identity_clash" in message
    assert "'identity' is already registered by built-in check" in message


def test_an_entry_point_that_does_not_load_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", "anss_broken_check", """
        [anss_gateway.checks]
        broken = anss_broken_check.missing:make
    """)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(CheckRegistryError, match=r"anss_gateway.checks:broken .* cannot load: ModuleNotFoundError"):
        discover()


def test_an_object_that_is_not_a_check_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", "anss_not_a_check", """
        [anss_gateway.checks]
        odd = anss_not_a_check:nothing
    """)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(CheckRegistryError, match="not a check"):
        discover()


class Rogue:
    """A third-party check whose results break the contract in one way each (``mode``)."""

    name = "rogue"
    facts = frozenset({"declared"})
    labels: ClassVar[dict[str, str]] = {"fr": "Voyou", "en": "Rogue"}
    operations = frozenset({"family"})
    verdict_schema: ClassVar[dict[str, Any]] = {"type": "object", "required": ["n"],
                                                "properties": {"n": {"type": "integer"}}}

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def plan(self, known: Any) -> Any:
        yield Operation("family", {"idcs": "1234567890"})
        yield Operation("coverage", {"idcs": "1234567890"})  # not among its operations

    def evaluate(self, evidence: Any) -> Any:
        record = Record("civil_registry", "family", {}, datetime.now(UTC))
        good = answered({"n": 1}, [fact("declared", True, "1234567890", record)], [])
        return {"undeclared fact": {**good, "facts": [fact("not_declared", True, "1234567890", record)]},
                "not a result": {"status": "weird"},
                "verdict off its schema": {**good, "verdict": {"n": "many"}},
                "well formed": good}[self.mode]

    def summary(self, verdict: Any) -> str:
        return "rogue"


@pytest.mark.parametrize("mode", ["undeclared fact", "not a result", "verdict off its schema", "well formed"])
def test_a_third_party_result_off_the_contract_is_unavailable_not_passed_on(mode: str) -> None:
    """docs/checks.md: facts only of the names it declares, the result's shape, a verdict its verdict_schema admits
    — a plug-in breaking that makes its check unavailable (the masks and the schema hold for what is answered)."""
    check = Rogue(mode)
    result = CheckRegistry._evaluate(check, Evidence(subject_idcs="1234567890", today=datetime.now(UTC).date()))
    if mode == "well formed":
        assert result["status"] == "verified" and result["verdict"] == {"n": 1}
    else:
        assert result["status"] == "unavailable" and result["facts"] == [] and result["verdict"] is None


def test_a_plan_may_ask_only_the_operations_its_check_declares() -> None:
    wanted = next_round([Rogue("well formed")], Evidence(subject_idcs="1234567890", today=datetime.now(UTC).date()))
    assert [op.name for op in wanted] == ["family"]
