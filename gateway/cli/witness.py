"""``anss-gateway witness``: run a C2SP tlog-witness of the access log (``serve``) and print its verifier key
(``key``) — both from the witness's own TOML file (``--config FILE``, format in ``gateway.audit.witness.config``
and docs/merkle-log.md, "Witnesses") — and, on the gateway's side, print the log's checkpoint verifier key for
witness operators (``log-key``) and write the witnessed checkpoints beside an export (``checkpoints``), both
from the gateway's configuration (the global ``--config`` directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import output_problem

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.audit.witness.config import WitnessConfig
    from gateway.config.settings import Settings

CHECKPOINTS_FORMAT = "anss-checkpoints-v1"


def _load(args: argparse.Namespace) -> tuple[WitnessConfig, Ed25519PrivateKey]:
    from gateway.audit.witness.config import load_config, load_witness_key

    config = load_config(Path(args.witness_config))
    return config, load_witness_key(config.key_file)


def _gateway_settings(args: argparse.Namespace) -> Settings:
    from gateway.cli.common import load_settings

    return load_settings(args)


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


def cmd_log_key(args: argparse.Namespace) -> int:
    from gateway.audit import log_id_for
    from gateway.audit.checkpoint import verifier_key
    from gateway.audit.witness.guard import load_checkpoint_key

    settings = _gateway_settings(args)
    w = settings.witnessing
    origin = w.origin or log_id_for(settings.gateway_id)
    print(f"origin = {json.dumps(origin)}")
    print(f"vkeys = [{json.dumps(verifier_key(origin, load_checkpoint_key(w.key_path(settings.state_dir))).encode())}]")
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from gateway.audit.witness.guard import CheckpointArchive

    settings = _gateway_settings(args)

    async def read() -> list[tuple[int, str]]:
        archive = CheckpointArchive(settings.state_dir / "checkpoints.sqlite3")
        try:
            return await archive.notes(args.from_size)
        finally:
            await archive.close()

    out = Path(args.out)
    problem = output_problem(out)
    if problem is not None:
        print(f"cannot write the checkpoints: {problem}", file=sys.stderr)
        return 2
    notes = asyncio.run(read())
    draft = out.with_name(f".{out.name}.draft")
    with draft.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"type": "checkpoints", "format": CHECKPOINTS_FORMAT}) + "\n")
        for size, note in notes:
            fh.write(json.dumps({"type": "checkpoint", "tree_size": size, "note": note}, ensure_ascii=False) + "\n")
    draft.replace(out)
    print(f"{len(notes)} checkpoints written to {out}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``witness serve|key|log-key|checkpoints`` to the ``anss-gateway`` parser."""
    w = subparsers.add_parser("witness", help="C2SP tlog-witnesses of the access log (docs/merkle-log.md)"
                              ).add_subparsers(dest="witness_cmd", required=True)
    for name, func, text in (
            ("serve", cmd_witness_serve, "run a witness: POST /add-checkpoint verifies, checks consistency, "
                                         "cosigns; GET /checkpoint?origin= answers the latest one held, cosigned"),
            ("key", cmd_witness_key, "print the witness's verifier key (creating its key file the first time)")):
        command = w.add_parser(name, help=text, description=text + ". For another body to run; configuration: "
                                                                   "docs/merkle-log.md, section Witnesses.")
        command.add_argument("--config", dest="witness_config", required=True, metavar="FILE",
                             help="the witness's TOML file")
        command.set_defaults(func=func)
    text = "print the origin and verifier key of the gateway's checkpoints, for a witness's [[logs]] table"
    w.add_parser("log-key", help=text, description=text + " (creates the checkpoint key the first time).",
                 ).set_defaults(func=cmd_log_key)
    text = "write the gateway's witnessed checkpoints (signed notes with cosignatures) as JSON Lines"
    c = w.add_parser("checkpoints", help=text, description=text + ", to hand over beside an export.")
    c.add_argument("--out", required=True, metavar="FILE")
    c.add_argument("--from-size", type=int, default=0, help="only checkpoints of this many entries or more")
    c.set_defaults(func=cmd_checkpoints)
