"""What the command modules share: the settings a command runs on (its state directory checked), and the TLS
environment variables."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.config.settings import Settings, load

TLS_ENV = {"tls_cert": "ANSS_GATEWAY_TLS_CERT", "tls_key": "ANSS_GATEWAY_TLS_KEY",
           "tls_client_ca": "ANSS_GATEWAY_TLS_CLIENT_CA"}


def load_settings(args: argparse.Namespace, *, writes_state: bool = True) -> Settings:
    """The settings of ``--config`` (or ``$ANSS_GATEWAY_CONFIG``, or the bundled config/); for a command that
    writes under the state directory, with that directory checked first (missing and not creatable, or not
    writable: one line naming it and its setting, exit 2, instead of a traceback)."""
    settings = load(Path(args.config) if args.config else None)
    if writes_state:
        from gateway.stores.files import ensure_state_dir

        ensure_state_dir(settings.state_dir)
    return settings


def output_problem(out: Path) -> str | None:
    """Why ``out`` cannot receive a command's output file (written beside it, then renamed), or None."""
    if out.is_dir():
        return f"{out} is a directory: give the path of a file to write"
    parent = out.parent
    if not parent.is_dir():
        return f"{parent} is not a directory that exists"
    return None
