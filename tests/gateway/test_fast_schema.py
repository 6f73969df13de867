"""The fast yes for request bodies (``gateway.api.fast_schema``): never a yes the full validator would not give,
and a yes for the plain valid bodies of the hot resources (else it would be no faster)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api.fast_schema import accepting
from gateway.api.validation import StrictValidator, _ecma_pattern, _plainly_valid, validator
from gateway.federation.checks.registry import builtin

PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
REQUEST_SCHEMAS = ["verification-request.json", "service-call-request.json", "audit-search-request.json",
                   "consent-revocation.json"]

SCALARS = (st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, 2.5, -1.0, 1e300])
           | st.sampled_from(["", "1234567890", "A123456", "asd.eligibility", "CASE-1", "identity", "schooling",
                              "x" * 70, "1234567890\n", "2026-12-01", "idcs", "cin"]) | st.text(max_size=6))
KEYS = st.sampled_from(["subject", "purpose", "case_ref", "checks", "as_of", "idcs", "cin", "params", "service",
                        "reason", "client", "since", "until", "limit", "extra"]) | st.text(max_size=4)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                      max_leaves=15)


def full(schema: Any, instance: Any) -> bool:
    return not list(StrictValidator(schema).iter_errors(instance))


@pytest.mark.parametrize("name", REQUEST_SCHEMAS)
def test_the_hot_schemas_compile(name: str) -> None:
    assert _plainly_valid(name, builtin()) is not None


@PROPERTIES
@given(VALUES, st.sampled_from(REQUEST_SCHEMAS))
def test_a_yes_is_always_the_full_validators_yes(instance: Any, name: str) -> None:
    predicate = _plainly_valid(name, builtin())
    assert predicate is not None
    if predicate(instance):
        assert full(validator(name, builtin()).schema, instance), instance


@pytest.mark.parametrize("body", [
    {"subject": {"idcs": "1234567890"}, "purpose": "asd.eligibility", "case_ref": "CASE-1"},
    {"subject": {"cin": "AB123456"}, "purpose": "asd.eligibility", "case_ref": "C:1/2",
     "checks": ["identity", "schooling"], "as_of": "2026-01-31"},
])
def test_plain_valid_verification_requests_get_the_fast_yes(body: dict[str, Any]) -> None:
    predicate = _plainly_valid("verification-request.json", builtin())
    assert predicate is not None and predicate(body)
    assert full(validator("verification-request.json", builtin()).schema, body)


@pytest.mark.parametrize("body", [
    {"subject": {"idcs": "1234567890\n"}, "purpose": "asd.eligibility", "case_ref": "CASE-1"},  # ECMA `$`
    {"subject": {"idcs": "1234567890", "cin": "AB123456"}, "purpose": "asd.eligibility", "case_ref": "CASE-1"},
    {"subject": {"idcs": "1234567890"}, "purpose": "asd.eligibility"},
    {"subject": {"idcs": "1234567890"}, "purpose": "asd.eligibility", "case_ref": "CASE-1", "extra": 1},
    {"subject": {"idcs": "1234567890"}, "purpose": "asd.eligibility", "case_ref": "CASE-1",
     "checks": ["identity", "identity"]},
    {"subject": {"idcs": "1234567890"}, "purpose": "asd.eligibility", "case_ref": "CASE-1", "checks": []},
    {"subject": {"idcs": "1234567890"}, "purpose": "asd.eligibility", "case_ref": "CASE-1", "checks": ["credit"]},
])
def test_invalid_verification_requests_go_to_the_full_validator(body: dict[str, Any]) -> None:
    predicate = _plainly_valid("verification-request.json", builtin())
    assert predicate is not None and not predicate(body)
    assert not full(validator("verification-request.json", builtin()).schema, body)


@pytest.mark.parametrize(("schema", "instance", "fast"), [
    ({"type": "integer"}, 1.0, True),  # 2020-12: a float with no fraction is an integer
    ({"type": "integer"}, True, False),
    ({"type": "number"}, False, False),
    ({"minimum": 0}, True, True),  # a boolean is no number: the bound does not apply (the full validator agrees)
    ({"enum": [1, "a"]}, 1, False),  # not text: not for the fast yes, whatever the full validator says
    ({"enum": ["a"]}, "a", True),
    ({"uniqueItems": True}, [1, True], False),  # 1 and true are different JSON values: the full validator's call
    ({"uniqueItems": True}, ["a", "b"], True),
    ({"additionalProperties": {"type": "string"}}, {"k": "v"}, True),
    ({"additionalProperties": {"type": "string"}}, {"k": 1}, False),
    ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"ab": 1}, True),
    ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"a\n": 1}, False),
    ({"maxLength": 2}, "abc", False),
    ({"type": "string", "format": "date"}, "not a date", True),  # format is an annotation here, as in full
])
def test_edge_cases_agree_with_the_full_validator(schema: dict[str, Any], instance: Any, fast: bool) -> None:
    predicate = accepting(schema, _ecma_pattern)
    assert predicate is not None
    assert predicate(instance) is fast
    if fast:
        assert full(schema, instance)


@pytest.mark.parametrize("schema", [
    {"$ref": "#/$defs/x", "$defs": {"x": {}}}, {"anyOf": [{}]}, {"oneOf": [{}]}, {"const": 1},
    {"prefixItems": [{}]}, {"patternProperties": {"a": {}}}, {"properties": {"a": {"not": {}}}},
    {"type": "decimal"}, False, {"items": False}, {"minimum": "0"},
])
def test_a_schema_outside_the_subset_gets_no_fast_yes(schema: Any) -> None:
    assert accepting(schema, _ecma_pattern) is None
