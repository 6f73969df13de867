"""Who may see what, and why: access rights per client × purpose × check, down to facts. Deny by default.

A right may withhold facts with rules ``<check>.<fact>`` or ``<check>.<fact>:adults|children`` (e.g.
``household.birth_date:adults``: the birth dates of adults are not shown). A person whose age cannot be
established is treated as both adult and child, so a qualified rule withholds rather than leaks.
Every decision — granted, refused, withheld — comes with its reason for the access log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from gateway.config.settings import Settings
from gateway.errors import BadRequest, Forbidden
from gateway.federation.calendar import age_on
from gateway.federation.checks.protocol import WITHHELD, Withhold

ADULT_AGE = 18


@dataclass(frozen=True)
class Decision:
    checks: tuple[str, ...]
    withheld: frozenset[str]
    reason: str


def authorise(settings: Settings, client_id: str, purpose: str, requested: Sequence[str] | None) -> Decision:
    """The checks to run and the facts to withhold, or a refusal.

    Without ``requested`` the client gets every check the purpose allows *and* it has a right to.
    """
    declared = settings.purposes.get(purpose)
    if declared is None:
        raise BadRequest(f"purpose {purpose!r} is not declared on this gateway", "unknown_purpose")
    client = settings.clients[client_id]
    granted: set[str] = set()
    withheld: set[str] = set()
    sources: list[str] = []
    for i, right in enumerate(client.rights):
        if right.purpose == purpose:
            granted |= right.checks
            withheld |= right.deny
            sources.append(f"rights[{i}]")
    if not granted:
        raise Forbidden(f"client {client_id!r} may not query for purpose {purpose!r}", "forbidden_purpose")
    if requested is None:
        checks = tuple(c for c in declared.checks if c in granted)
    else:
        denied = [c for c in requested if c not in granted]
        if denied:
            raise Forbidden(f"client {client_id!r} may not run {denied} for purpose {purpose!r}", "forbidden_check")
        checks = tuple(dict.fromkeys(requested))
    relevant = frozenset(rule for rule in withheld if rule.split(".", 1)[0] in checks)
    reason = f"{client_id} {', '.join(sources)} grants {sorted(granted)} for {purpose}"
    return Decision(checks, relevant, reason)


def _ages(results: dict[str, dict[str, Any]], today: date) -> dict[str, int]:
    ages: dict[str, int] = {}
    for result in results.values():
        for fact in result["facts"]:
            if fact["name"] == "birth_date" and isinstance(fact["value"], str):
                ages[fact["about"]] = age_on(date.fromisoformat(fact["value"]), today)
        verdict = result.get("verdict")
        children = verdict.get("children") if isinstance(verdict, dict) else None
        for child in children if isinstance(children, list) else []:  # schooling lists children with ages
            if isinstance(child, dict) and isinstance(child.get("age"), int):
                ages.setdefault(child["idcs"], child["age"])
    return ages


def _matches(rule: str, check: str, fact: dict[str, Any], ages: dict[str, int]) -> bool:
    target, _, qualifier = rule.partition(":")
    rule_check, _, rule_fact = target.partition(".")
    if rule_check != check or rule_fact != fact["name"]:
        return False
    if not qualifier:
        return True
    age = ages.get(fact["about"])
    if age is None:
        return True  # unknown age: withhold
    return (age >= ADULT_AGE) == (qualifier == "adults")


def apply_masks(results: dict[str, dict[str, Any]], rules: Iterable[str], today: date,
                withholders: Mapping[str, Withhold] | None = None) -> list[str]:
    """Remove withheld facts in place; return the rules that removed something.

    A withheld fact leaves the check's verdict too: a verdict member of the fact's name holding its value
    becomes null, and the value is taken out of the verdict's words (``WITHHELD`` in its place); a check
    whose verdict derives more from it (``asd_entitlement``'s claim dates) gives a ``withhold`` of its own
    (``withholders``, by check name), called with the verdict and the facts withheld."""
    rules = sorted(rules)
    if not rules:
        return []
    ages = _ages(results, today)
    applied: set[str] = set()
    for check, result in results.items():
        kept, used, hidden = [], set(), []
        for fact in result["facts"]:
            hit = next((r for r in rules if _matches(r, check, fact, ages)), None)
            if hit is None:
                kept.append(fact)
            else:
                used.add(hit)
                hidden.append(fact)
        verdict = result.get("verdict")
        components = verdict.get("components") if isinstance(verdict, dict) else None
        for component in components if isinstance(components, list) else []:
            # a check that cites facts in its verdict's lines (asd_entitlement) withholds them there too
            cited = component.get("facts") if isinstance(component, dict) else None
            if not isinstance(cited, list):
                continue
            shown = []
            for fact in cited:
                hit = next((r for r in rules if _matches(r, check, fact, ages)), None)
                if hit is None:
                    shown.append(fact)
                else:
                    used.add(hit)
                    hidden.append(fact)
            component["facts"] = shown
        if used:
            result["facts"] = kept
            result["withheld"] = sorted(used)
            applied |= used
            if isinstance(verdict, dict):
                own = (withholders or {}).get(check)
                if own is not None:
                    own(verdict, hidden)
                _withhold_values(verdict, hidden)
    return sorted(applied)


def _withhold_values(verdict: dict[str, Any], hidden: Sequence[Mapping[str, Any]]) -> None:
    """Take the hidden facts' values out of ``verdict`` (see ``apply_masks``); booleans and nulls are the
    verdict's own conclusions, left alone."""
    values = {(f["name"], f["value"]) for f in hidden
              if isinstance(f.get("value"), (str, int, float)) and not isinstance(f.get("value"), bool)}
    texts = sorted({str(v) for _, v in values if len(str(v)) >= 4}, key=len, reverse=True)

    def words(text: str) -> str:
        if " " not in text:  # (a date or a code, not words: such a member is nulled by its name or its check)
            return text
        for t in texts:
            text = text.replace(t, WITHHELD)
        return text

    def repeated(key: str, value: Any) -> bool:
        return isinstance(value, (str, int, float)) and not isinstance(value, bool) and (key, value) in values

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                if key != "facts":  # (the facts were masked by the rules themselves)
                    node[key] = None if repeated(key, value) else walk(value)
            return node
        if isinstance(node, list):
            node[:] = [walk(item) for item in node]
            return node
        return words(node) if isinstance(node, str) and texts else node

    walk(verdict)


__all__ = ["Decision", "apply_masks", "authorise"]
