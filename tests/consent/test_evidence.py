"""A consent's evidence is a reference of a declared shape, never names or identifiers
(gateway/policy/consent/evidence.py); the API and the command line refusals are in test_api.py and test_cli.py."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.policy.consent.evidence import from_text, shown, stored


@pytest.mark.parametrize(("given", "text"), [
    ({"kind": "document", "id": "ASD-12/2026-123"}, "document:ASD-12/2026-123"),
    ({"kind": "document", "id": "form.12_b:3"}, "document:form.12_b:3"),
    ("https://docs.example.ma/consents/ASD-12/2026-123.pdf", "https://docs.example.ma/consents/ASD-12/2026-123.pdf"),
    ("https://docs.example.ma:8443/c?ref=ASD-12&page=2", "https://docs.example.ma:8443/c?ref=ASD-12&page=2"),
])
def test_references_are_stored_as_one_line_and_shown_in_their_shape(given: Any, text: str) -> None:
    assert stored(given) == text
    assert shown(text) == given
    assert stored(from_text(text)) == text, "the command line's form is the stored one"


def test_older_free_text_is_shown_as_it_was_recorded() -> None:
    assert shown("form ASD-12 signed at the Rabat office") == "form ASD-12 signed at the Rabat office"


@pytest.mark.parametrize(("given", "says"), [
    ({"kind": "document", "id": "1234567890"}, "IDCS"),
    ({"kind": "document", "id": "file-1234567890-b"}, "IDCS"),
    ({"kind": "document", "id": "BE123456"}, "CIN"),
    ({"kind": "document", "id": "dossier/jt17061"}, "CIN"),
    ("https://docs.example.ma/c/1234567890", "IDCS"),
    ("https://docs.example.ma/c?cin=A12345", "CIN"),
    ({"kind": "document", "id": "x", "name": "Fatima Zahra"}, "name field"),
    ({"kind": "document", "id": "x", "Prénom": "Fatima"}, "name field"),
    ({"kind": "document", "id": "x", "last-name": "Alaoui"}, "name field"),
    ("https://docs.example.ma/c?NOM=Alaoui", "name field"),
])
def test_identifiers_and_name_fields_are_refused_with_a_stable_code(given: Any, says: str) -> None:
    with pytest.raises(BadRequest, match=says) as refused:
        stored(given)
    assert refused.value.code == "evidence_personal_data" and refused.value.status == 400
    assert "1234567890" not in refused.value.detail and "Fatima" not in refused.value.detail


@pytest.mark.parametrize("given", [
    "form ASD-12 signed at the Rabat office", "http://docs.example.ma/c/1", "https://", "https:///c",
    "https://user:pw@docs.example.ma/c", "https://docs.example.ma/a b", "https://docs.example.ma:x/c",
    "https://docs.example.ma/" + "a" * 200, {"kind": "photo", "id": "x"}, {"kind": "document"},
    {"kind": "document", "id": ""}, {"kind": "document", "id": "a b"}, {"kind": "document", "id": "-x"},
    {"kind": "document", "id": "x", "page": 2}, 12, None, ["document", "x"],
])
def test_other_shapes_are_invalid_requests(given: Any) -> None:
    with pytest.raises(BadRequest) as refused:
        stored(given)
    assert refused.value.code == "invalid_request"


@pytest.mark.parametrize("given", [{"kind": "document", "id": "ASD12345"}, {"kind": "document", "id": "n-12345678901"}])
def test_longer_runs_are_not_identifier_shaped(given: Any) -> None:
    assert stored(given).startswith("document:")
