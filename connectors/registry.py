"""Finds connector kinds and builds the administrations: the built-in ``soap`` and ``rest`` kinds, plus any
third-party kind published in the entry-point group ``anss_gateway.connectors`` (the entry point names a
``ConnectorFactory``). ``build_all`` builds every configured administration and refuses two that claim one
operation: an operation has exactly one administration that answers it, never a silent shadow."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from connectors.base import Connector, ConnectorConfig, ConnectorConfigError, ConnectorFactory
from connectors.resilience import CircuitBreaker, Resilient, breaker_settings, bulkhead_settings

ENTRY_POINT_GROUP = "anss_gateway.connectors"
BUILTIN_KINDS = {"soap": "connectors.soap:SoapConnector", "rest": "connectors.rest:RestConnector"}


class UnknownConnectorKind(LookupError):
    """No built-in or installed connector kind has this name."""


class ConnectorBuildError(ValueError):
    """An administration could not be built from its configuration: ``config`` is the one at fault, ``setting``
    the dotted setting (empty when the kind did not say), ``detail`` why."""

    def __init__(self, config: ConnectorConfig, setting: str, detail: str) -> None:
        super().__init__(f"connector {config.name!r}: `{setting}`: {detail}" if setting else
                         f"connector {config.name!r}: {detail}")
        self.config, self.setting, self.detail = config, setting, detail


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


def build_all(configs: Iterable[ConnectorConfig], root: Path, *, resilient: bool = True) -> dict[str, Connector]:
    """Every administration, by name, each behind its breaker and bulkhead (``connectors.resilience``) unless
    ``resilient`` is False; ``ConnectorBuildError`` for the first that cannot be built, for two with one name,
    and for an operation claimed by two administrations."""
    connectors: dict[str, Connector] = {}
    owners: dict[str, ConnectorConfig] = {}
    by_name: dict[str, ConnectorConfig] = {}
    for config in configs:
        if config.name in by_name:
            other = _where(by_name[config.name])
            raise ConnectorBuildError(config, "name", f"{config.name!r} is also the name of {other}")
        by_name[config.name] = config
        try:
            connector = build(config, root)
            if resilient:
                connector = Resilient(connector, CircuitBreaker(breaker_settings(config.breaker or None)),
                                      bulkhead_settings(config.bulkhead or None))
        except UnknownConnectorKind:
            raise ConnectorBuildError(config, "kind", f"unknown connector kind {config.kind!r}; "
                                                      f"known: {sorted(available_kinds())}") from None
        except ConnectorConfigError as exc:
            raise ConnectorBuildError(config, exc.setting, exc.detail) from None
        except Exception as exc:  # a third-party kind that fails its own way: still one line, never a traceback
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConnectorBuildError(config, "", f"cannot be built ({type(exc).__name__}: {detail})") from None
        for operation in sorted(connector.operations):
            if operation in owners:
                raise ConnectorBuildError(config, f"operations.{operation}",
                                          f"{owners[operation].name!r} ({_where(owners[operation])}) already "
                                          "answers this operation; an operation has one administration")
            owners[operation] = config
        connectors[config.name] = connector
    return connectors


def _where(config: ConnectorConfig) -> str:
    return str(config.source) if config.source else f"connector {config.name!r}"
