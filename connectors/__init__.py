"""Pluggable connectors to the administrations (civil registry, education, health, employment).

A connector *kind* (``soap``, ``rest``) is generic machinery; an administration is configuration plus a
small mapping module that turns the backend's answer into a canonical record.
"""

from connectors.base import (
    CallContext,
    Connector,
    ConnectorConfig,
    ConnectorError,
    Query,
    Record,
    SourceFault,
    SourceMalformed,
    SourceNotFound,
    SourceRejected,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
)

__all__ = [
    "CallContext",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "Query",
    "Record",
    "SourceFault",
    "SourceMalformed",
    "SourceNotFound",
    "SourceRejected",
    "SourceTimeout",
    "SourceTooLarge",
    "SourceUnavailable",
]
