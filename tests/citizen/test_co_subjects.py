"""Every person whose data a verification read is named in its access-log entry (``co_subjects``: spouses and
children, by pseudonym), and sees that access in their own citizen access log — without the other person's case
or consent; a person who was not read sees nothing. (gateway/api/verifications.py, gateway/citizen/view.py.)"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.citizen.view import Viewer, classify
from tests.citizen.conftest import CitizenStack


def page(answer: Any) -> dict[str, Any]:
    assert answer.status == 200, answer.body
    document: dict[str, Any] = orjson.loads(answer.body)
    return document


async def test_spouses_and_children_read_see_the_access_in_their_own_log(citizens: CitizenStack) -> None:
    stack, idp = citizens.stack, citizens.idp
    household = stack.population.fixture("deceased_father")  # mother, three children
    mother, children = household.mother, household.children
    p = citizens.pseudonymiser
    answer = await stack.client.verify({"idcs": mother.idcs}, "asd.eligibility", "CASE-FAMILY",
                                       ["household", "schooling"])
    assert answer.status == 200
    identity_only = await stack.client.verify({"idcs": mother.idcs}, "asd.eligibility", "CASE-ALONE", ["identity"])
    assert identity_only.status == 200

    entries = [e for _, e in citizens.log() if e.get("path") == "/v1/verifications"]
    family_entry, alone_entry = entries[-2], entries[-1]
    read = {household.father.idcs, *(c.idcs for c in children)}  # the family record lists them all
    assert family_entry["co_subjects"] == sorted(p.pseudonym("idcs", idcs) for idcs in read)
    assert family_entry["subject"] == p.pseudonym("idcs", mother.idcs)
    assert "co_subjects" not in alone_entry, "only the subject was read: no co-subjects, bytes as before"
    raw = b"".join(e for e, _ in citizens.log())
    assert not any(c.idcs.encode() in raw for c in children), "pseudonyms only, never an identifier"

    child = children[0]
    seen = page(await citizens.read(idp.token(child.idcs)))["entries"]
    assert [(e["event"], e["case_ref"]) for e in seen] == [("household_verification", None)]
    shown = seen[0]
    assert shown["legal_basis"] == {"type": "statute", "statute": family_entry["legal_basis"]}
    assert shown["outcome"] == "answered" and shown["event_label"].startswith("Vos données lues")
    assert shown["by"] and len(shown["data"]) == 2

    mine = page(await citizens.read(idp.token(mother.idcs)))["entries"]
    assert [(e["event"], e["case_ref"]) for e in mine] == [("verification", "CASE-ALONE"),
                                                           ("verification", "CASE-FAMILY")]
    stranger = stack.population.fixture("amo_tadamon").children[0]
    assert page(await citizens.read(idp.token(stranger.idcs)))["entries"] == []


def test_a_co_subject_never_sees_the_other_persons_case_or_consent(citizens: CitizenStack) -> None:
    settings = citizens.stack.settings
    me, other = "a" * 64, "b" * 64
    entry = {"time": "2026-05-04T09:12:03.000001+00:00", "method": "POST", "path": "/v1/verifications",
             "status": 200, "outcome": "partial", "client": "mhpv.housing", "purpose": "partner.social-housing",
             "legal_basis": "consent", "case_ref": "THEIR-CASE", "checks": ["household"], "subject": other,
             "co_subjects": [me], "consent_id": "0b6f7a52-3c1e-4e0b-9a51-2f0c8d1e7a44"}
    assert classify(entry, {me}) == "household_verification"
    assert classify({**entry, "co_subjects": []}, {me}) is None
    assert classify({**entry, "path": "/v1/consents"}, {me}) is None, "only verifications read a co-subject"
    shown = Viewer(settings, frozenset({me}), "en", {}).show(entry)
    assert shown is not None
    assert shown["case_ref"] is None and shown["legal_basis"] == {"type": "consent", "consent": None}
    assert shown["outcome"] == "partial" and shown["event_label"] == "Your data was read to check a member of " \
                                                                      "your household"
