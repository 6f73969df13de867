"""Finds connector kinds: the built-in ``soap`` and ``rest``, plus any third-party kind published in the
entry-point group ``anss_gateway.connectors`` (the entry point names a ``ConnectorFactory``)."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from connectors.base import Connector, ConnectorConfig, ConnectorFactory

ENTRY_POINT_GROUP = "anss_gateway.connectors"
BUILTIN_KINDS = {"soap": "connectors.soap:SoapConnector", "rest": "connectors.rest:RestConnector"}


class UnknownConnectorKind(LookupError):
    pass


def _load(ref: str) -> ConnectorFactory:
    module, _, attr = ref.partition(":")
    factory: ConnectorFactory = getattr(import_module(module), attr)
    return factory


def available_kinds() -> dict[str, str]:
    kinds = dict(BUILTIN_KINDS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kinds.setdefault(ep.name, ep.value)
    return kinds


def factory_for(kind: str) -> ConnectorFactory:
    ref = available_kinds().get(kind)
    if ref is None:
        raise UnknownConnectorKind(f"unknown connector kind {kind!r}; known: {sorted(available_kinds())}")
    return _load(ref)


def build(config: ConnectorConfig, root: Path) -> Connector:
    return factory_for(config.kind)(config, root)
