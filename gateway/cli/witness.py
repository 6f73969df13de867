"""``anss-gateway witness``: run a C2SP tlog-witness of the access log (``serve``), print its verifier key (``key``).

Both read the witness's own TOML file (``--config FILE``, format in ``gateway.audit.witness.config`` and
docs/merkle-log.md, "Witnesses"), not the gateway's configuration directory.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.audit.witness.config import WitnessConfig


def _load(args: argparse.Namespace) -> tuple[WitnessConfig, Ed25519PrivateKey]:
    from gateway.audit.witness.config import load_config, load_witness_key

    config = load_config(Path(args.witness_config))
    return config, load_witness_key(config.key_file)


def cmd_witness_serve(args: argparse.Namespace) -> int:
    from gateway.audit.witness.service import serve
    from gateway.web import logs

    config, key = _load(args)
    logs.configure(json=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, key, stop)

    asyncio.run(run())
    return 0


def cmd_witness_key(args: argparse.Namespace) -> int:
    from gateway.audit.witness.config import witness_verifier_key

    config, key = _load(args)
    print(witness_verifier_key(config, key).encode())
    return 0


def register(subparsers: Any) -> None:
    """Add ``witness serve`` and ``witness key`` to the ``anss-gateway`` parser."""
    w = subparsers.add_parser("witness", help="a C2SP tlog-witness of the access log (run by another body)"
                              ).add_subparsers(dest="witness_cmd", required=True)
    for name, func, text in (
            ("serve", cmd_witness_serve, "serve POST /add-checkpoint: verify, check consistency, cosign"),
            ("key", cmd_witness_key, "print the witness's verifier key (creating its key file the first time)")):
        command = w.add_parser(name, help=text, description=text + ". Configuration: docs/merkle-log.md, "
                                                                   "section Witnesses.")
        command.add_argument("--config", dest="witness_config", required=True, metavar="FILE",
                             help="the witness's TOML file")
        command.set_defaults(func=func)
