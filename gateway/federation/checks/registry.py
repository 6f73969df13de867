"""The check registry: the single source of the check vocabulary (names, maskable facts, labels).

The built-in checks come first, in the statute's order (the RSU registration, then the ASD entitlement
that rests on the others); then the checks other distributions publish
under the entry-point group ``anss_gateway.checks``, by name. An entry point names a ``Check`` object, a
class (instantiated without arguments) or a factory (called without arguments) that returns one::

    [anss_gateway.checks]
    housing_aid = "my_package.checks:HOUSING_AID"

Two checks with one name, an entry point that does not load, or an object that is not a check stop the
gateway at start-up (``CheckRegistryError``, a ``ConfigError``) with one line naming the entry point.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from importlib import metadata
from typing import Any

import structlog

from gateway.config.toml import ConfigError
from gateway.federation.checks import (
    asd_entitlement,
    employment,
    health_coverage,
    household,
    identity,
    schooling,
    social_registry,
)
from gateway.federation.checks.protocol import LABEL_LANGUAGES, Check, Result, Withhold, unavailable
from gateway.federation.evidence import Evidence

log = structlog.get_logger(__name__)

GROUP = "anss_gateway.checks"
BUILTIN: tuple[Check, ...] = (identity.CHECK, household.CHECK, schooling.CHECK, health_coverage.CHECK,
                              employment.CHECK, social_registry.CHECK, asd_entitlement.CHECK)
NAME = re.compile(r"[a-z][a-z_]{0,31}")  # as field-mask rules (`check.fact`) and the access log need
FACT = re.compile(r"[a-z_][a-z_0-9]{0,63}")


class CheckRegistryError(ConfigError):
    """A check cannot be registered; the message names it and where it came from."""


class CheckRegistry:
    """The checks this gateway knows, in order. Immutable; compared and hashed by identity."""

    __slots__ = ("_checks", "facts", "names", "operations", "withholders")

    def __init__(self, checks: Iterable[tuple[Check, str]]) -> None:
        found: dict[str, Check] = {}
        origin: dict[str, str] = {}
        for check, where in checks:
            _validate(check, where)
            if check.name in found:
                raise CheckRegistryError(f"{where}: check {check.name!r} is already registered "
                                         f"by {origin[check.name]}; check names must be unique")
            found[check.name], origin[check.name] = check, where
        self._checks: Mapping[str, Check] = found
        self.names: tuple[str, ...] = tuple(found)
        self.facts: Mapping[str, frozenset[str]] = {n: frozenset(c.facts) for n, c in found.items()}
        self.operations: Mapping[str, frozenset[str]] = {n: frozenset(c.operations) for n, c in found.items()}
        # a check's optional ``withhold(verdict, facts)``: what of its verdict leaves with facts a mask withholds
        self.withholders: Mapping[str, Withhold] = {n: c.withhold for n, c in found.items()  # type: ignore[attr-defined]
                                                    if callable(getattr(c, "withhold", None))}

    def __getitem__(self, name: str) -> Check:
        return self._checks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._checks

    def __iter__(self) -> Iterator[Check]:
        return iter(self._checks.values())

    def __len__(self) -> int:
        return len(self._checks)

    def label(self, name: str, language: str) -> str:
        """The citizen's label of a check in ``language`` (French if it has none in that language)."""
        labels = self._checks[name].labels
        return labels.get(language) or labels["fr"]

    def evaluate(self, checks: Iterable[str], evidence: Evidence) -> dict[str, Result]:
        """Each requested check's result, in the order asked."""
        if evidence.subject_idcs is None:  # the subject could not even be resolved
            return {c: unavailable("civil_registry") for c in checks}
        return {c: self.result_of(self._checks[c], evidence) for c in checks}

    @staticmethod
    def result_of(check: Check, evidence: Evidence) -> Result:
        """``check``'s result on ``evidence``, evaluated once: a check resting on others (``asd_entitlement``)
        reads the same results as the caller instead of evaluating them again."""
        result = evidence.results.get(check.name)
        if result is None:
            result = evidence.results[check.name] = CheckRegistry._evaluate(check, evidence)
        return result

    @staticmethod
    def _evaluate(check: Check, evidence: Evidence) -> Result:
        try:
            result = check.evaluate(evidence)
        except Exception:  # a plug-in's bug must not become a 500: that check has no verdict
            log.exception("check_crashed", check=check.name)
            return unavailable(check.name)
        if check not in BUILTIN:  # (the built-in checks' results are held to their shape by the tests)
            problem = _malformed(check, result)
            if problem is not None:  # nor may it answer what the contract does not allow, or facts it did not declare
                log.error("check_result_malformed", check=check.name, problem=problem)
                return unavailable(check.name)
        return result

    def __repr__(self) -> str:
        return f"CheckRegistry({list(self.names)})"


FACT_KEYS = frozenset({"name", "value", "about", "source", "retrieved_at"})
_verdict_validators: dict[int, Any] = {}


def _malformed(check: Check, result: Any) -> str | None:
    """What is wrong with a third-party check's result (docs/checks.md: the shape of verification-response.json,
    facts it declares, a verdict its own ``verdict_schema`` admits), or None."""
    if not isinstance(result, dict) or result.get("status") not in ("verified", "partial", "unavailable"):
        return "not a result: status must be verified, partial or unavailable"
    facts, unverified, verdict = result.get("facts"), result.get("unverified"), result.get("verdict", ...)
    if not isinstance(facts, list) or not isinstance(unverified, list) or verdict is ...:
        return "a result has facts and unverified (lists) and a verdict"
    for item in facts:
        if not isinstance(item, dict) or set(item) != FACT_KEYS:
            return "a fact is made by fact(name, value, about, record)"
        if item["name"] not in check.facts:
            return f"fact {item['name']!r} is not among the facts the check declares"
    if verdict is not None and not isinstance(verdict, dict):
        return "the verdict is an object, or null"
    schema = getattr(check, "verdict_schema", None)
    if verdict is not None and schema:
        from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

        validator = _verdict_validators.get(id(check))
        if validator is None:
            validator = _verdict_validators[id(check)] = Draft202012Validator(schema)
        if not validator.is_valid(verdict):
            return "the verdict does not follow the check's verdict_schema"
    return None


def _validate(check: Any, where: str) -> None:
    for member in ("name", "facts", "labels", "operations", "plan", "evaluate", "summary"):
        if not hasattr(check, member):
            raise CheckRegistryError(f"{where}: not a check (it has no `{member}`); see docs/checks.md")
    if not isinstance(check.name, str) or not NAME.fullmatch(check.name):
        raise CheckRegistryError(f"{where}: check name {check.name!r} must match {NAME.pattern}")
    bad = sorted(str(f) for f in check.facts if not isinstance(f, str) or not FACT.fullmatch(f))
    if bad:
        raise CheckRegistryError(f"{where}: check {check.name!r} has fact name(s) {bad} not matching {FACT.pattern}")
    missing = [lang for lang in LABEL_LANGUAGES if not isinstance(check.labels.get(lang), str)]
    if missing:
        raise CheckRegistryError(f"{where}: check {check.name!r} has no label in {missing}")
    for method in ("plan", "evaluate", "summary"):
        if not callable(getattr(check, method)):
            raise CheckRegistryError(f"{where}: check {check.name!r}: `{method}` is not callable")


def _from_entry_point(entry: metadata.EntryPoint) -> tuple[Check, str]:
    dist = getattr(entry, "dist", None)
    where = f"entry point {GROUP}:{entry.name} = {entry.value!r}" + (f" of {dist.name}" if dist else "")
    try:
        target = entry.load()
        if isinstance(target, type) or not hasattr(target, "evaluate"):
            if not callable(target):
                raise CheckRegistryError(f"{where}: names neither a check nor a factory of one")
            target = target()
    except CheckRegistryError:
        raise
    except Exception as exc:  # an import error, a factory that raised: say which entry point, not a traceback
        raise CheckRegistryError(f"{where}: cannot load: {type(exc).__name__}: {exc}") from exc
    return target, where


def builtin() -> CheckRegistry:
    """The checks this gateway ships."""
    return _builtin()


@lru_cache(maxsize=1)
def _builtin() -> CheckRegistry:
    return CheckRegistry((c, f"built-in check {c.name!r}") for c in BUILTIN)


def discover() -> CheckRegistry:
    """Built-ins and every check installed under ``anss_gateway.checks``; scanned once per ``sys.path``."""
    return _discover(tuple(sys.path))


@lru_cache(maxsize=8)
def _discover(path: tuple[str, ...]) -> CheckRegistry:
    entries = sorted(metadata.entry_points(group=GROUP), key=lambda e: (e.name, e.value))
    if not entries:
        return builtin()
    third_party = [_from_entry_point(e) for e in entries]
    return CheckRegistry([(c, f"built-in check {c.name!r}") for c in BUILTIN] + third_party)
