"""Services: another administration's operation called through the gateway on a partner's behalf.

``ServiceCatalogue`` is built once at start-up from ``config/services.toml`` and the built connectors: for
each service, its administration and what the operation takes and yields (``connectors.declared.
OperationInfo``). A service whose operation cannot describe itself (a Python mapping that declares no
parameters) is a configuration error, since no caller could know how to call it.

``call`` sends one query to the service's administration and returns the canonical record, or None when the
administration does not know the subject. Every failure becomes an ``UpstreamError`` carrying the
connector's stable code (``source_timeout``, ``source_unavailable``…): the backend's own words never reach
the caller, and the gateway mediates every backend to JSON — raw XML is never passed through.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from connectors.base import (
    CallContext,
    Connector,
    ConnectorError,
    Describable,
    Query,
    Record,
    SourceNotFound,
    SourceQueryRefused,
    SourceTimeout,
)
from connectors.declared import OperationInfo
from gateway.config.services import Service
from gateway.config.toml import ConfigError, line_of
from gateway.errors import BadRequest, UpstreamError, UpstreamTimeout

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PublishedService:
    service: Service
    connector: Connector
    info: OperationInfo

    def check_params(self, params: Mapping[str, str]) -> None:
        """A call's parameters fit the operation's, or 400 ``invalid_request`` saying which does not."""
        if self.info.params is None:
            return
        try:
            self.info.params.check(params)
        except ValueError as exc:
            raise BadRequest(f"/params: {exc}") from None

    def identifiers(self, params: Mapping[str, str]) -> list[tuple[str, str]]:
        """The (parameter, value) pairs that name a person, in declaration order."""
        names = self.info.params.identifiers if self.info.params is not None else ()
        return [(name, params[name]) for name in names if params.get(name) is not None]


@dataclass(frozen=True)
class Outcome:
    record: Record | None
    latency_ms: float


class ServiceCatalogue:
    def __init__(self, published: Mapping[str, PublishedService]) -> None:
        self.published = dict(published)

    @classmethod
    def build(cls, services: Mapping[str, Service], connectors: Mapping[str, Connector],
              services_file: Any = None) -> ServiceCatalogue:
        published: dict[str, PublishedService] = {}
        for name, service in services.items():
            header = f'[services."{name}"]'
            where = f"{line_of(services_file, header)} " if services_file else ""
            connector = connectors.get(service.provider)
            if connector is None or service.operation not in connector.operations:
                raise ConfigError(f"{where}service {name!r}: {service.provider!r} does not answer "
                                  f"{service.operation!r}")
            if not isinstance(connector, Describable):
                raise ConfigError(f"{where}service {name!r}: {service.provider!r} is of a kind that cannot describe "
                                  "its operations, so it cannot publish a service")
            info = connector.describe(service.operation)
            if not isinstance(info, OperationInfo) or info.params is None:
                raise ConfigError(f"{where}service {name!r}: operation {service.operation!r} declares no "
                                  "parameters (a Python mapping must give its RestOperation/SoapOperation `params`)")
            published[name] = PublishedService(service, connector, info)
        return cls(published)

    def get(self, name: str) -> PublishedService | None:
        return self.published.get(name)


def check_service_masks(settings: Any, catalogue: ServiceCatalogue) -> None:
    """Every ``deny`` of a client's service right names a property of that service's record (or of its list
    items): a mask that names nothing would silently withhold nothing."""
    for client in settings.clients.values():
        for i, right in enumerate(client.services):
            published = catalogue.get(right.service)
            if published is None:
                continue
            properties = published.info.record_schema.get("properties", {})
            for rule in sorted(right.deny):
                name, _, item = rule.partition(".")
                known = name in properties
                if known and item:
                    items = properties[name].get("items", {}) if isinstance(properties[name], dict) else {}
                    known = item in items.get("properties", {}) if isinstance(items, dict) else False
                if not known:
                    clients_file = settings.config_dir / "clients.toml"
                    header = f'[clients."{client.id}"]'
                    at = line_of(clients_file, chr(34) + rule + chr(34), after=header)
                    raise ConfigError(f"{at} {header} services[{i}]: `deny` names {rule!r}, which the "
                                      f"{published.info.record_kind} record of {right.service!r} does not have")


class ParametersRefused(BadRequest):
    """400: the administration was asked, and refused the call's parameters (``SourceQueryRefused``)."""


async def call(published: PublishedService, params: Mapping[str, str], ctx: CallContext) -> Outcome:
    started = time.perf_counter()
    service = published.service
    try:
        record: Record | None = await published.connector.fetch(Query(service.operation, dict(params)), ctx)
    except SourceNotFound:
        record = None
    except SourceQueryRefused:  # the administration's own check of the parameters (its words stay with it)
        raise ParametersRefused("/params: the administration refused these parameters") from None
    except SourceTimeout:
        raise UpstreamTimeout(f"{service.provider} did not answer in time", "source_timeout") from None
    except ConnectorError as exc:
        log.warning("service_source_failed", service=service.name, source=service.provider, code=exc.code)
        code = exc.code if exc.code.startswith("source_") and exc.code != "source_error" else "source_unavailable"
        raise UpstreamError(f"{service.provider} gave no usable answer ({code})", code) from None
    except ValueError:  # the connector refused the query before sending: its params did not fit
        raise BadRequest("/params: do not fit the service's parameters") from None
    except Exception:  # a connector bug must not become a 500 with a trace
        log.exception("service_connector_crashed", service=service.name, source=service.provider)
        raise UpstreamError(f"{service.provider} gave no usable answer", "source_unavailable") from None
    return Outcome(record, (time.perf_counter() - started) * 1000)
