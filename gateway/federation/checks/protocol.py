"""The ``Check`` seam: what a check is (its name, the facts it can state, its labels, the operations it may
ask), how it plans its calls from what is already known, and how it turns the evidence into a result.

A check is stateless and shared by every request. ``plan`` is called once per round with the evidence
gathered so far and returns every operation it wants *given that knowledge* (asking again for what is
already answered is harmless: the executor skips it); when no check wants anything new, evaluation
starts. ``evaluate`` returns the result shape of ``schemas/verification-response.json``::

    {"status": "verified" | "partial" | "unavailable", "verdict": {...} | None,
     "facts": [fact(...), ...], "unverified": [...]}

A check may also carry ``verdict_schema`` (a JSON Schema of its verdict) for the published contract;
without it the contract says only that the verdict is an object. When a field mask withholds some of its facts,
the gateway takes their values out of the verdict (a member of the fact's name holding the value becomes null;
the value leaves the verdict's words, ``WITHHELD`` in its place); a check whose verdict derives more from a fact
gives ``withhold(verdict, facts)`` (a ``Withhold``), called first with the facts withheld, to take that out too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connectors.base import Record
from gateway.federation.evidence import Evidence

Result = dict[str, Any]

# What a label must have: the citizen pages speak French (the default) and English; Arabic is welcome.
LABEL_LANGUAGES = ("fr", "en")


@dataclass(frozen=True)
class Operation:
    """One call a plan wants: the connector operation, its parameters, and the key its answer is kept
    under in ``Evidence.answers`` (the person's IDCS unless said otherwise)."""

    name: str
    params: Mapping[str, str] = field(default_factory=dict)
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.params.get("idcs", ""))


class Check(Protocol):
    """One question a client may ask about a subject (``identity``, ``schooling``...)."""

    @property
    def name(self) -> str:
        """The check's name in requests, rights and the access log: ``[a-z][a-z_]*``."""

    @property
    def facts(self) -> frozenset[str]:
        """The names of the facts it can state (what field masks may withhold)."""

    @property
    def labels(self) -> Mapping[str, str]:
        """What a citizen reads for it, by language (``fr`` and ``en`` required, ``ar`` optional)."""

    @property
    def operations(self) -> frozenset[str]:
        """Every connector operation its plan may ask for (the administrations it may need)."""

    def plan(self, known: Evidence) -> Iterable[Operation]:
        """The operations it wants, given what ``known`` already holds."""

    def evaluate(self, evidence: Evidence) -> Result:
        """Facts and verdict from the gathered evidence."""

    def summary(self, verdict: Mapping[str, Any]) -> str:
        """One readable line about a verdict (the demo, ``client verify``)."""


Withhold = Callable[[dict[str, Any], Sequence[Mapping[str, Any]]], None]
WITHHELD = "…"  # what stands in a verdict's words where a value withheld by a field mask was


def fact(name: str, value: Any, about: str, record: Record) -> dict[str, Any]:
    """One fact, naming the administration that gave it and when."""
    return {"name": name, "value": value, "about": about, "source": record.source,
            "retrieved_at": _stamp(record.retrieved_at)}


@functools.lru_cache(maxsize=1024)
def _stamp(at: datetime) -> str:
    # a record gives many facts: its time is written once
    return at.isoformat(timespec="milliseconds")


def unavailable(*sources: str) -> Result:
    """No verdict: a source the check cannot do without failed (``sources`` names it)."""
    return {"status": "unavailable", "verdict": None, "facts": [], "unverified": list(sources)}


def answered(verdict: Mapping[str, Any], facts: list[dict[str, Any]], unverified: list[str]) -> Result:
    """A verdict: ``partial`` when something could not be verified, else ``verified``."""
    return {"status": "partial" if unverified else "verified", "verdict": dict(verdict), "facts": facts,
            "unverified": unverified}
