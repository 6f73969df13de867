"""The loader reads OpenFisca's parameter format (https://openfisca.org/doc/coding-the-legislation/
legislation_parameters.html) with OpenFisca's semantics, plus the project's one addition (every value in
force names its legal basis), and still refuses every mistake at load time in one line naming file and key.
Each tree is real YAML written to a temporary directory and read through ``load`` / ``load_rules``."""

from __future__ import annotations

import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest

from gateway.entitlement.asd import RULES_DIR, HouseholdFacts, entitlement, load_rules
from gateway.entitlement.parameters import ParameterError, ParameterTree, load


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def refused(root: Path, *fragments: str, rules: bool = False) -> str:
    with pytest.raises(ParameterError) as caught:
        load_rules(root) if rules else load(root)
    text = str(caught.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def full(key: str = "2015-01-01", value: str = "1", more: str = "") -> str:
    """A parameter in the strictest form (every key given), so a test fails for the reason it names."""
    return (f"description: A rate\nmetadata:\n  unit: currency-MAD\n  reference: Loi n° 1\nvalues:\n"
            f"  {key}:\n    value: {value}\n    metadata:\n      reference: Loi n° 1\n{more}")


def value(tree: ParameterTree, name: str, on: date) -> object:
    snapshot = tree.in_force(on)
    assert snapshot is not None
    return snapshot.values.get(name)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    target = tmp_path / "asd"
    shutil.copytree(RULES_DIR, target)
    return target


# 1. The kinds the evaluator declares (asd.REQUIRED) are enforced at start-up; non-finite numbers never load

@pytest.mark.parametrize(("written", "message"), [
    ("150.5", "values.2023-12-01.value: must be a whole number"),
    (".nan", "values.2023-12-01.value: must be a finite number"),
    (".inf", "values.2023-12-01.value: must be a finite number"),
    ("-.inf", "values.2023-12-01.value: must be a finite number"),
    ("true", "values.2023-12-01.value: must be a number"),
])
def test_a_value_of_the_wrong_kind_for_the_evaluator_stops_the_start(tree_copy: Path, written: str,
                                                                     message: str) -> None:
    leaf = tree_copy / "children" / "ranks_1_3" / "not_in_school.yaml"
    leaf.write_text(leaf.read_text(encoding="utf-8").replace("value: 150\n", f"value: {written}\n"), encoding="utf-8")
    refused(tree_copy, str(leaf), message, rules=True)


def test_a_whole_float_is_a_whole_number_and_non_finite_is_refused_without_any_requirement(tmp_path: Path) -> None:
    write(tmp_path, {"amount.yaml": full("2020-01-01", "150.0")})
    tree = load(tmp_path).require({"amount": int})
    snapshot = tree.in_force(date(2021, 1, 1))
    assert snapshot is not None and snapshot.integer("amount") == 150
    write(tmp_path, {"amount.yaml": full("2020-01-01", ".nan")})
    refused(tmp_path, "amount.yaml: values.2020-01-01.value: must be a finite number")


# 2. A key written twice in a mapping is refused (quoted or not), naming the file and the key

@pytest.mark.parametrize(("text", "key"), [
    (full(more="  '2015-01-01':\n    value: 2\n    metadata:\n      reference: Loi n° 2\n"), "'2015-01-01'"),
    (full(more="  2015-01-01:\n    value: 2\n    metadata:\n      reference: Loi n° 2\n"), "'2015-01-01'"),
    (full().replace("  unit: currency-MAD\n", "  unit: currency-MAD\n  unit: currency-EUR\n"), "'unit'"),
])
def test_a_duplicate_key_is_refused(tmp_path: Path, text: str, key: str) -> None:
    write(tmp_path, {"rate.yaml": text})
    refused(tmp_path, str(tmp_path / "rate.yaml"), f"duplicate key {key}")


# 3. One name, two definitions

@pytest.mark.parametrize("files", [
    {"a.yaml": full(), "a.yml": full(value="2")},
    {"a.yaml": full(), "a/b.yaml": full(value="2")},
])
def test_a_name_defined_twice_is_refused(tmp_path: Path, files: dict[str, str]) -> None:
    write(tmp_path, files)
    refused(tmp_path, str(tmp_path), ": a: defined twice")


# 4. A parameter without a value on a date is absent that day, not the whole table

def test_a_parameter_without_a_value_is_absent_only_itself(tree_copy: Path) -> None:
    write(tree_copy, {
        "extra/later.yaml": full("2030-06-01", "5"),
        "extra/ended.yaml": full("2023-12-01", "7", "  2024-01-01:\n    value: null\n"),
    })
    tree = load_rules(tree_copy)
    today = tree.in_force(date(2026, 3, 1))
    assert today is not None  # before: None, since extra.later had not started
    assert "extra.later" not in today.values and "extra.ended" not in today.values
    assert today.effective_from == date(2026, 1, 1)
    later = tree.in_force(date(2031, 1, 1))
    assert later is not None and later.values["extra.later"] == 5
    assert later.effective_from == date(2026, 1, 1)  # the required ones date the rate table, not extra.later
    nobody = HouseholdFacts(children=(), father_deceased=False, head_alive=True, registered=True, index=5.0,
                            salaried_parent=False)
    assert entitlement(nobody, later).rates_effective_from == date(2026, 1, 1)


# 5. Dates are exactly YYYY-MM-DD

@pytest.mark.parametrize(("key", "message"), [
    ("'20150101'", "values.20150101: not an ISO date (YYYY-MM-DD)"),
    ("2015-W01-1", "values.2015-W01-1: not an ISO date"),
    ("2015-1-01", "values.2015-1-01: not an ISO date"),
    ("2015-02-30", "values.2015-02-30: not an ISO date"),
    ("20150101", "values.20150101: read as a number, not a date: write it YYYY-MM-DD"),
])
def test_a_date_not_written_yyyy_mm_dd_is_refused(tmp_path: Path, key: str, message: str) -> None:
    write(tmp_path, {"rate.yaml": full(key)})
    refused(tmp_path, "rate.yaml: " + message)


# 6. OpenFisca's value forms: plain, null (also first), {value, metadata}, expected entries skipped

def test_openfisca_value_forms(tmp_path: Path) -> None:
    write(tmp_path, {"rate.yaml": """\
        description: A rate
        metadata:
          reference: Loi n° 1
        values:
          2014-01-01: null
          2015-01-01: 550
          2016-01-01:
            value: 600
            metadata:
              reference: Décret 2016
              note: any metadata key
          2017-01-01: null
          2018-01-01: 0.5
          2019-01-01: expected
          2020-01-01:
            expected: 700
        """})
    tree = load(tmp_path)
    assert tree.in_force(date(2014, 6, 1)) is None  # a first value of null: nothing in force yet
    assert value(tree, "rate", date(2015, 6, 1)) == 550
    assert value(tree, "rate", date(2016, 6, 1)) == 600
    assert tree.in_force(date(2017, 6, 1)) is None
    assert value(tree, "rate", date(2021, 1, 1)) == 0.5  # the expected entries are not values
    snapshot = tree.in_force(date(2016, 6, 1))
    assert snapshot is not None and snapshot.value_references["rate"] == "Décret 2016"
    assert snapshot.references["rate"] == "Loi n° 1" and snapshot.since["rate"] == date(2016, 1, 1)


# 7. Description, metadata and unit are optional; a value in force must still name its legal basis

def test_a_value_in_force_without_any_reference_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"rate.yaml": "values:\n  2015-01-01: 550\n  2016-01-01: null\n"})
    refused(tmp_path, "rate.yaml: values.2015-01-01.metadata.reference: required")
    write(tmp_path, {"rate.yaml": "values:\n  2015-01-01:\n    value: 550\n    reference: Loi n° 1\n"
                                  "  2016-01-01: null\n"})
    assert value(load(tmp_path), "rate", date(2015, 1, 1)) == 550  # no description, unit nor metadata needed


@pytest.mark.parametrize(("reference", "text"), [
    ("reference: Loi n° 1", "Loi n° 1"),
    ("metadata:\n  reference: [Loi n° 1, Décret n° 2]", "Loi n° 1; Décret n° 2"),
    ("metadata:\n  reference:\n    title: Loi n° 1\n    href: https://example.ma/1", "Loi n° 1 (https://example.ma/1)"),
    ("metadata:\n  reference:\n    - title: Loi n° 1\n    - href: https://example.ma/2", "Loi n° 1; https://example.ma/2"),
    ("metadata:\n  reference:\n    2010-01-01: Loi n° 1\n    2015-06-01:\n      title: Loi n° 2", "Loi n° 2"),
])
def test_references_in_openfisca_forms_become_one_text(tmp_path: Path, reference: str, text: str) -> None:
    write(tmp_path, {"rate.yaml": f"{reference}\nvalues:\n  2015-06-01: 550\n"})
    snapshot = load(tmp_path).in_force(date(2016, 1, 1))
    assert snapshot is not None
    assert snapshot.references["rate"] == snapshot.value_references["rate"] == text


def test_a_dated_reference_before_any_value_leaves_it_without_a_basis(tmp_path: Path) -> None:
    write(tmp_path, {"rate.yaml": "metadata:\n  reference:\n    2016-01-01: Loi n° 2\nvalues:\n  2015-01-01: 5\n"})
    refused(tmp_path, "values.2015-01-01.metadata.reference: required")
    write(tmp_path, {"rate.yaml": "metadata:\n  reference:\n    - title: 5\nvalues:\n  2015-01-01: 5\n"})
    refused(tmp_path, "rate.yaml: metadata.reference[0].title: must be a non-empty text")


# 8. The older keys: top-level unit/reference, unit beside a value, any metadata key, optional index.yaml keys

def test_older_openfisca_keys_and_optional_index(tmp_path: Path) -> None:
    write(tmp_path, {
        "index.yaml": "",
        "benefits/index.yaml": "metadata:\n  order: [rate]\n  custom: anything\nunit: currency\n",
        "benefits/rate.yaml": """\
            description: A rate
            unit: currency
            reference: Loi n° 1
            metadata:
              label: extra keys are fine
            documentation: Notes.
            values:
              2015-01-01:
                value: 550
                unit: currency
        """,
    })
    tree = load(tmp_path)
    assert tree.description == ""
    parameter = tree.parameters["benefits.rate"]
    assert (parameter.unit, parameter.reference, parameter.references) == ("currency", "Loi n° 1", ("Loi n° 1",))


# 9. A node written as one file, the simplified parameter file; scales are refused

def test_a_node_in_one_file_and_the_simplified_parameter_file(tmp_path: Path) -> None:
    write(tmp_path, {
        "benefits.yaml": """\
            description: Benefits
            basic_income:
              description: Monthly amount
              reference: Loi n° 1
              values:
                2015-01-01: 550
            housing:
              description: Housing
              max:
                reference: Loi n° 2
                values:
                  2016-01-01: 1000
        """,
        "min_age.yaml": "2015-01-01:\n  value: 25\n  reference: Loi 3\n2016-01-01:\n  value: 18\n  reference: Loi 4\n",
    })
    tree = load(tmp_path)
    assert sorted(tree.parameters) == ["benefits.basic_income", "benefits.housing.max", "min_age"]
    snapshot = tree.in_force(date(2016, 6, 1))
    assert snapshot is not None
    assert dict(snapshot.values) == {"benefits.basic_income": 550, "benefits.housing.max": 1000, "min_age": 18}
    write(tmp_path, {"benefits.yaml": "description: Benefits\nhousing:\n  max:\n    values:\n      2016-01-01: 1000\n"})
    refused(tmp_path, "benefits.yaml: housing.max.values.2016-01-01.metadata.reference: required")


def test_scales_are_refused(tmp_path: Path) -> None:
    write(tmp_path, {"tax.yaml": """\
        reference: Loi
        brackets:
          - threshold:
              2015-01-01: 0
            rate:
              2015-01-01: 0.1
        """})
    refused(tmp_path, "tax.yaml: brackets: scales are not supported")


def test_a_scale_in_a_nodes_index_is_refused_as_a_scale(tmp_path: Path) -> None:
    write(tmp_path, {"tax/index.yaml": "description: Tax\nbrackets:\n  - rate:\n      2015-01-01: 0.1\n",
                     "tax/rate.yaml": full()})
    refused(tmp_path, "index.yaml: brackets: scales are not supported")


# 8. What OpenFisca reads and a first reading refused; and what no file may do to the start

def test_a_child_whose_name_starts_with_a_digit_is_a_child_in_a_node_file(tmp_path: Path) -> None:
    """OpenFisca takes a key as a date only in an instant's form: ``1er_enfant`` is a child's name."""
    write(tmp_path, {"allocations.yaml": """\
        description: Per child
        1er_enfant:
          reference: R
          values:
            2015-01-01: 100
        2e_enfant:
          reference: R
          values:
            2015-01-01: 80
        """})
    tree = load(tmp_path)
    assert value(tree, "allocations.1er_enfant", date(2016, 1, 1)) == 100
    assert value(tree, "allocations.2e_enfant", date(2016, 1, 1)) == 80


def test_hidden_entries_are_ignored_like_other_files(tmp_path: Path) -> None:
    write(tmp_path, {"rate.yaml": full(), ".git/config.yaml": "not: [a parameter", "._rate.yaml": "\x00junk: ["})
    assert sorted(load(tmp_path).parameters) == ["rate"]


def test_an_empty_description_is_no_description(tmp_path: Path) -> None:
    write(tmp_path, {"rate.yaml": full().replace("description: A rate", "description: ''")})
    assert load(tmp_path).parameters["rate"].description == ""


def test_an_integer_an_answer_could_not_carry_is_refused_at_load(tmp_path: Path) -> None:
    write(tmp_path, {"rate.yaml": full(value=str(2**53 + 1))})
    refused(tmp_path, "rate.yaml: values.2015-01-01.value: must be a number from -2^53 to 2^53")
    write(tmp_path, {"rate.yaml": full(value=str(2**53))})
    assert value(load(tmp_path), "rate", date(2016, 1, 1)) == 2**53


@pytest.mark.parametrize(("text", "message"), [
    ("a: &x {b: *x}\n", "nested more than 32 deep (or a YAML alias that contains itself)"),
    ("\n".join(["l0: &a0 [1, 2]", *(f"l{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 31))]) + "\n",
     "holds more than 100000 items once its aliases are written out"),
    ("a: " + "[" * 40 + "]" * 40 + "\n", "nested more than 32 deep"),
])
def test_a_file_that_aliases_itself_or_explodes_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, {"rate.yaml": full(), "bomb.yaml": text})
    refused(tmp_path, "bomb.yaml: " + message)
