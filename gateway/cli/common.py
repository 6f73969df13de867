"""What the command modules share: the settings a command runs on, and the TLS environment variables."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.config.settings import Settings, load

TLS_ENV = {"tls_cert": "ANSS_GATEWAY_TLS_CERT", "tls_key": "ANSS_GATEWAY_TLS_KEY",
           "tls_client_ca": "ANSS_GATEWAY_TLS_CLIENT_CA"}


def load_settings(args: argparse.Namespace) -> Settings:
    """The settings of ``--config`` (or ``$ANSS_GATEWAY_CONFIG``, or the bundled config/)."""
    return load(Path(args.config) if args.config else None)
