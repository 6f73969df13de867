"""The ASD parameter tree (config/rules/asd/) loads in OpenFisca's format, selects the values in force on a
date, and refuses every mistake in one line naming the file and the key."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from gateway.entitlement.asd import RULES_DIR, Child, HouseholdFacts, entitlement, load_rules
from gateway.entitlement.parameters import IN_FORCE_CACHE, ParameterError, load


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    target = tmp_path / "asd"
    shutil.copytree(RULES_DIR, target)
    return target


def test_the_shipped_tree_loads_with_every_rule() -> None:
    tree = load_rules()
    assert "children.ranks_1_3.young_or_in_school" in tree.parameters
    for parameter in tree.parameters.values():
        assert parameter.reference and all(parameter.references)


@pytest.mark.parametrize(("on", "in_school", "not_in_school", "orphan", "since"), [
    (date(2023, 12, 1), 200, 150, 350, date(2023, 12, 1)),
    (date(2025, 10, 31), 200, 150, 350, date(2023, 12, 1)),
    (date(2025, 11, 1), 250, 175, 375, date(2025, 11, 1)),
    (date(2025, 12, 31), 250, 175, 375, date(2025, 11, 1)),
    (date(2026, 1, 1), 300, 200, 400, date(2026, 1, 1)),
    (date(2026, 10, 1), 300, 200, 400, date(2026, 1, 1)),
])
def test_rates_in_force_by_date(on: date, in_school: int, not_in_school: int, orphan: int, since: date) -> None:
    rules = load_rules().in_force(on)
    assert rules is not None
    assert rules.values["children.ranks_1_3.young_or_in_school"] == in_school
    assert rules.values["children.ranks_1_3.not_in_school"] == not_in_school
    assert rules.values["children.ranks_1_3.father_deceased"] == orphan
    assert (rules.values["children.ranks_4_6.young_or_in_school"], rules.values["children.ranks_4_6.not_in_school"]) \
        == (36, 24)
    assert rules.values["eligibility.asd_threshold"] == 9.743001
    assert rules.values["eligibility.amo_tadamon_threshold"] == 9.3264284
    assert rules.effective_from == since


def test_a_date_is_worked_out_once_and_the_dates_kept_are_bounded() -> None:
    tree = load(RULES_DIR)
    first = tree.in_force(date(2026, 3, 1))
    assert first is not None and tree.in_force(date(2026, 3, 1)) is first  # the same snapshot, not worked out again
    for day in range(1, 300):  # callers choose past dates (``as_of``): the dates kept stay bounded
        snapshot = tree.in_force(date.fromordinal(date(2024, 1, 1).toordinal() + day))
        assert snapshot is not None and snapshot.values["eligibility.asd_threshold"] == 9.743001
    assert len(tree._in_force) <= IN_FORCE_CACHE
    again = tree.in_force(date(2023, 11, 30))
    assert again is None and tree.in_force(date(2023, 11, 30)) is None  # "nothing in force" is kept as well


def test_nothing_in_force_before_the_programme_started() -> None:
    assert load_rules().in_force(date(2023, 11, 30)) is None


def test_a_new_year_is_a_configuration_change(tree_copy: Path) -> None:
    leaf = tree_copy / "children" / "ranks_1_3" / "young_or_in_school.yaml"
    leaf.write_text(leaf.read_text(encoding="utf-8") + "  2027-01-01:\n    value: 320\n"
                    "    metadata:\n      reference: Décret de revalorisation 2027 (test)\n", encoding="utf-8")
    tree = load_rules(tree_copy)
    rules = tree.in_force(date(2027, 3, 1))
    assert rules is not None and rules.values["children.ranks_1_3.young_or_in_school"] == 320
    assert rules.effective_from == date(2027, 1, 1)
    before = tree.in_force(date(2026, 12, 31))
    assert before is not None and before.values["children.ranks_1_3.young_or_in_school"] == 300
    # what an answer cites for the new amount: the parameter's legal basis, then the value's own text
    name = "children.ranks_1_3.young_or_in_school"
    assert rules.cited[name] == f"{rules.references[name]}; Décret de revalorisation 2027 (test)"
    assert "58-23" in rules.cited[name]
    amounts = entitlement(HouseholdFacts(children=(Child("c1", date(2024, 1, 1)),), father_deceased=False,
                                         head_alive=True, registered=True, index=5.0, salaried_parent=False), rules)
    assert [c.reference for c in amounts.components if c.rule == name] == [rules.cited[name]]


def test_a_null_value_ends_a_parameter(tree_copy: Path) -> None:
    leaf = tree_copy / "household" / "floor.yaml"
    leaf.write_text(leaf.read_text(encoding="utf-8") + "  2030-01-01:\n    value: null\n"
                    "    reference: abrogé (test)\n", encoding="utf-8")
    tree = load_rules(tree_copy)
    assert tree.in_force(date(2029, 12, 31)) is not None
    assert tree.in_force(date(2030, 1, 1)) is None  # the evaluator requires it: no rates in force
    alone = load(tree_copy).in_force(date(2030, 1, 1))  # nothing required: only that parameter is absent
    assert alone is not None and "household.floor" not in alone.values and "household.without_child" in alone.values


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("    value: 150\n", "    value: beaucoup\n"),
     "not_in_school.yaml: values.2023-12-01.value: must be a number, true/false or null"),
    (lambda t: t.replace("      reference: \"Premiers", "      note: \"Premiers")
     .replace("  reference: \"D", "  note: \"D"),  # neither the value's reference nor its parameter's
     "not_in_school.yaml: values.2023-12-01.metadata.reference: required"),
    (lambda t: t.replace("  2025-11-01:", "  2025-13-01:"), "not_in_school.yaml: values.2025-13-01: not an ISO date"),
    (lambda t: t.replace("description:", "descriptoin:"), "not_in_school.yaml: descriptoin: unknown key"),
    (lambda t: t.replace("  unit: currency-MAD\n", "  unit: 12\n"), "not_in_school.yaml: metadata.unit: must be a"),
    (lambda t: t.replace("values:\n", "values: [\n"), "not_in_school.yaml:"),
])
def test_mistakes_are_one_line_naming_file_and_key(tree_copy: Path, edit: object, message: str) -> None:
    leaf = tree_copy / "children" / "ranks_1_3" / "not_in_school.yaml"
    leaf.write_text(edit(leaf.read_text(encoding="utf-8")), encoding="utf-8")  # type: ignore[operator]
    with pytest.raises(ParameterError) as caught:
        load_rules(tree_copy)
    text = str(caught.value)
    assert "\n" not in text and message in text
    assert str(tree_copy) in text


def test_a_missing_rule_or_a_reading_of_the_wrong_kind_is_refused(tree_copy: Path) -> None:
    (tree_copy / "household" / "floor.yaml").unlink()
    with pytest.raises(ParameterError, match=r"household/floor.yaml: missing: the parameter 'household.floor'"):
        load_rules(tree_copy)
    shutil.copy(RULES_DIR / "household" / "floor.yaml", tree_copy / "household" / "floor.yaml")
    reading = tree_copy / "readings" / "eldest_first.yaml"
    reading.write_text(reading.read_text(encoding="utf-8").replace("value: true", "value: 1"), encoding="utf-8")
    with pytest.raises(ParameterError, match=r"eldest_first.yaml: values.2023-12-01.value: must be true or false"):
        load_rules(tree_copy)


def test_the_rsu_thresholds_hold_while_another_rate_has_ended(tree_copy: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A rate ending (``null``) leaves the ASD table without rates (``eligible: null``), not the thresholds the
    ``social_registry`` check reports: those are still in force."""
    from gateway.entitlement import rules as in_use
    from gateway.federation.checks.social_registry import _verdict

    leaf = tree_copy / "birth_grant" / "first_birth.yaml"
    leaf.write_text(leaf.read_text(encoding="utf-8") + "  2026-09-01: null\n", encoding="utf-8")
    tree = load_rules(tree_copy)
    on = date(2026, 10, 1)
    assert tree.in_force(on) is None, "a required rate has no value: no table"
    monkeypatch.setitem(in_use._loaded, "asd", tree)
    data = {"household_id": "H-1", "registration_date": "2024-01-01", "last_update": "2026-01-01",
            "region": "Oriental", "members": [{"idcs": "1"}], "socio_economic_index": 9.0}
    verdict = _verdict(data, on)
    assert verdict["thresholds"] is not None and verdict["thresholds"]["asd"] == 9.743001
    assert verdict["below_asd_threshold"] is True and verdict["below_amo_tadamon_threshold"] is True
    assert _verdict(data, date(2020, 1, 1))["thresholds"] is None, "before any threshold: none"
