"""A consent's ``evidence``: a reference to where the consent is kept, of a declared shape — never free text.

Free text invited names and identifiers, stored verbatim and shown to citizens. A consent now points at its
proof in one of two shapes (docs/security.md section 6):

* ``{"kind": "document", "id": "<reference>"}`` — the partner's own reference of the signed form or file:
  1 to 100 of ``A-Z a-z 0-9 . _ / : -``, starting with a letter or digit (no spaces: no room for a name);
* ``"https://…"`` — a URL of the document in the partner's document system (at most 200 characters, no user
  name or password in it, no spaces).

Either is refused with 400 ``evidence_personal_data`` when it holds an IDCS-shaped value (10 digits in a row)
or a CIN-shaped one (1–2 letters then 5–6 digits), or a name field — a member such as ``name`` or ``nom`` beside
``kind`` and ``id``, or such a query parameter in a URL. Any other shape is 400 ``invalid_request``.

The registry stores the reference as one line of text: ``document:<id>`` or the URL (``stored``), and
``shown`` gives the declared shape back. Consents recorded before references existed keep their text, shown as
it was (the registry is append-only).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from gateway.errors import BadRequest

KINDS = ("document",)
DOCUMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,99}")
MAX_URL_CHARS = 200
IDCS_SHAPED = re.compile(r"(?<![0-9])[0-9]{10}(?![0-9])")
CIN_SHAPED = re.compile(r"(?<![A-Za-z])[A-Za-z]{1,2}[0-9]{5,6}(?![0-9])")
NAME_FIELDS = frozenset({
    "name", "names", "full_name", "fullname", "first_name", "firstname", "last_name", "lastname", "surname",
    "given_name", "family_name", "middle_name", "nom", "prenom", "prénom", "nom_complet", "citizen", "holder",
    "signatory", "signed_by", "person",
})
PERSONAL = "evidence_personal_data"


def _personal(what: str) -> BadRequest:
    return BadRequest(f"/evidence: {what}; a consent's evidence is a reference to its document, never personal "
                      "data", PERSONAL)


def _no_identifier(text: str, where: str) -> None:
    if IDCS_SHAPED.search(text):
        raise _personal(f"{where} holds an IDCS-shaped value (10 digits)")
    if CIN_SHAPED.search(text):
        raise _personal(f"{where} holds a CIN-shaped value (letters then 5 or 6 digits)")


def _is_name_field(key: str) -> bool:
    return key.strip().lower().replace("-", "_").replace(" ", "_") in NAME_FIELDS


def stored(evidence: Any) -> str:
    """The registry's text for a reference given in either declared shape; 400 otherwise (see the module)."""
    if isinstance(evidence, dict):
        names = [k for k in evidence if isinstance(k, str) and _is_name_field(k)]
        if names:
            raise _personal(f"holds a name field ({names[0]!r})")
        extra = sorted(set(evidence) - {"kind", "id"})
        if extra:
            raise BadRequest(f"/evidence: a document reference holds `kind` and `id` only, not {extra[0]!r}")
        kind, ident = evidence.get("kind"), evidence.get("id")
        if kind not in KINDS:
            raise BadRequest(f"/evidence/kind: must be one of {list(KINDS)}")
        if not isinstance(ident, str) or not DOCUMENT_ID.fullmatch(ident):
            raise BadRequest("/evidence/id: 1 to 100 of A-Z a-z 0-9 . _ / : -, starting with a letter or digit")
        _no_identifier(ident, "the document id")
        return f"{kind}:{ident}"
    if isinstance(evidence, str):
        return _url(evidence)
    raise BadRequest('/evidence: give {"kind": "document", "id": "..."} or an https URL')


def _url(text: str) -> str:
    if len(text) > MAX_URL_CHARS or any(c <= " " or c == "\x7f" for c in text):
        raise BadRequest(f"/evidence: a URL of at most {MAX_URL_CHARS} characters without spaces or control "
                         'characters (or {"kind": "document", "id": "..."})')
    try:
        parts = urlsplit(text)
        port = parts.port  # a malformed port raises here
    except ValueError:
        raise BadRequest("/evidence: is not a URL") from None
    if parts.scheme != "https" or not parts.hostname or port == 0:
        raise BadRequest('/evidence: a URL must be https://host/...; or give {"kind": "document", "id": "..."}')
    if parts.username is not None or parts.password is not None:
        raise BadRequest("/evidence: a URL must not hold a user name or password")
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _is_name_field(key):
            raise _personal(f"the URL has a name field ({key!r})")
    _no_identifier(text, "the URL")
    _no_identifier(unquote(text), "the URL")  # also once its %-escapes are decoded (715309402%39 is 7153094029)
    return text


def shown(text: str) -> str | dict[str, str]:
    """A stored reference in its declared shape: the document object, or the URL (older free text as it is)."""
    kind, sep, ident = text.partition(":")
    if sep and kind in KINDS and DOCUMENT_ID.fullmatch(ident):
        return {"kind": kind, "id": ident}
    return text


def from_text(text: str) -> Any:
    """The command line's ``--evidence``: ``document:<id>`` or an https URL, as the API would give it."""
    kind, sep, ident = text.partition(":")
    return {"kind": kind, "id": ident} if sep and kind in KINDS else text
