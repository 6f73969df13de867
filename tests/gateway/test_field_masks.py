"""Access rights down to facts: a client may run a check yet be denied some of its facts."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import orjson

from gateway.config.settings import Right, Settings
from tests.gateway.conftest import build_stack


def masked_rights(settings: Settings) -> Settings:
    client = settings.clients["anss.asd"]
    right = Right("asd.eligibility", client.rights[0].checks,
                  frozenset({"household.birth_date:adults", "identity.cin", "employment.declared_salary_mad"}))
    return replace(settings, clients={**settings.clients, "anss.asd": replace(client, rights=(right,))})


async def test_withheld_facts_are_removed_named_and_logged(tmp_path: Path) -> None:
    async with build_stack(tmp_path, masked_rights) as stack:
        household = stack.population.fixture("salaried_parent")
        answer = await stack.client.verify({"idcs": household.father.idcs}, "asd.eligibility", "MASK-1")
        assert answer.status == 200 and answer.signature_header is not None
        checks = answer.json()["checks"]

        births = {f["about"] for f in checks["household"]["facts"] if f["name"] == "birth_date"}
        assert births == {c.idcs for c in household.children}, "children's birth dates only"
        assert checks["household"]["withheld"] == ["household.birth_date:adults"]
        assert {f["about"] for f in checks["household"]["facts"] if f["name"] == "relation"} == {
            m.idcs for m in household.members}, "other facts about adults are still there"

        assert not [f for f in checks["identity"]["facts"] if f["name"] == "cin"]
        assert checks["identity"]["withheld"] == ["identity.cin"]
        assert not [f for f in checks["employment"]["facts"] if f["name"] == "declared_salary_mad"]
        assert checks["employment"]["verdict"]["salaried_work_declared"] is True, "verdicts stay"
        assert "withheld" not in checks["schooling"]
        assert household.father.cin is not None and household.father.cin.encode() not in answer.body

        conn = sqlite3.connect(stack.settings.audit_database)
        entry = orjson.loads(conn.execute("SELECT entry FROM access_log ORDER BY idx DESC LIMIT 1").fetchone()[0])
        conn.close()
        assert entry["detail"]["withheld"] == ["employment.declared_salary_mad", "household.birth_date:adults",
                                               "identity.cin"]
        assert "anss.asd rights[0] grants" in entry["detail"]["decision"]


async def test_refusals_are_logged_with_their_reason(tmp_path: Path) -> None:
    async with build_stack(tmp_path) as stack:
        tadamon = stack.client_for("cnss.amo-tadamon")
        async with tadamon:
            answer = await tadamon.verify({"idcs": stack.population.fixture("amo_tadamon").father.idcs},
                                          "amo.tadamon.eligibility", "T-9", ["schooling"])
        assert answer.status == 403
        conn = sqlite3.connect(stack.settings.audit_database)
        entry = orjson.loads(conn.execute("SELECT entry FROM access_log ORDER BY idx DESC LIMIT 1").fetchone()[0])
        conn.close()
        assert entry["outcome"] == "forbidden_check"
        assert "may not run ['schooling']" in entry["detail"]["reason"]
