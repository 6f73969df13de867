"""``batch submit|status|results|cancel``: population re-verification from the command line (docs/batches.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.cli.common import load_settings, output_problem
from gateway.crypto import keys


def progress_bar(status: dict[str, Any], width: int = 30) -> str:
    total = max(int(status["total"]), 1)
    finished = int(status["done"]) + int(status["failed"])
    filled = width * finished // total
    rate = f"{status['rate_per_s']:.1f}/s" if status.get("rate_per_s") else "-/s"
    eta = f"ETA {status['eta_s']:.0f} s" if status.get("eta_s") is not None else ""
    return (f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{total} "
            f"({status['failed']} failed) {rate} {eta} {status['status']}").rstrip()


def _run(args: argparse.Namespace, exchange: Callable[[Any], Awaitable[int]]) -> int:
    import aiohttp

    from gateway.client import GatewayClient
    from gateway.crypto.keyring import dev_client_key_path

    settings = load_settings(args)
    key_path = Path(args.key) if args.key else dev_client_key_path(settings.state_dir, args.client)
    if not key_path.exists():
        print(f"no private key for client {args.client!r} at {key_path}", file=sys.stderr)
        return 2
    url = args.url or f"http://{settings.host}:{settings.port}"

    async def run() -> int:
        try:
            async with GatewayClient(url, args.client, keys.load_private_pem(key_path), settings.gateway_id) as client:
                return await exchange(client)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            print(f"cannot reach the gateway at {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1

    return asyncio.run(run())


def _refused(answer: Any) -> int:
    try:
        problem = answer.json()
        print(f"HTTP {answer.status} {problem.get('code')}: {problem.get('detail')}", file=sys.stderr)
    except ValueError:
        print(f"HTTP {answer.status}", file=sys.stderr)
    return 1


async def _follow(client: Any, batch_id: str, interval_s: float = 1.0) -> int:
    last = ""
    while True:
        answer = await client.request("GET", f"/v1/batches/{batch_id}")
        if answer.status != 200:
            return _refused(answer)
        status = answer.json()
        line = progress_bar(status)
        if line != last:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
            last = line
        if status["status"] != "running":
            print(file=sys.stderr)
            return 0
        await asyncio.sleep(interval_s)


def cmd_batch_submit(args: argparse.Namespace) -> int:
    try:
        body = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    query = urlencode([("purpose", args.purpose), ("case_ref_prefix", args.case_ref_prefix)]
                      + [("check", c) for c in args.check or []])

    async def exchange(client: Any) -> int:
        answer = await client.request("POST", f"/v1/batches?{query}", body=body,
                                      headers={"Content-Type": "application/x-ndjson"})
        if answer.status != 202:
            return _refused(answer)
        batch = answer.json()
        print(batch["batch_id"])
        return await _follow(client, batch["batch_id"]) if args.wait else 0

    return _run(args, exchange)


def cmd_batch_status(args: argparse.Namespace) -> int:
    async def exchange(client: Any) -> int:
        if args.follow:
            return await _follow(client, args.batch_id)
        answer = await client.request("GET", f"/v1/batches/{args.batch_id}")
        if answer.status != 200:
            return _refused(answer)
        print(orjson.dumps(answer.json(), option=orjson.OPT_INDENT_2).decode())
        return 0

    return _run(args, exchange)


UNFINISHED = 3  # ``batch results`` without --follow on a batch still running: the lines so far are written


def cmd_batch_results(args: argparse.Namespace) -> int:
    """Every result line into ``--out``. On a batch still running: with ``--follow``, wait for the lines still to
    come until it ends; without, write the lines so far, say so on stderr and exit 3 (docs/batches.md)."""
    out = Path(args.out)
    problem = output_problem(out)
    if problem is not None:
        print(f"cannot write the results: {problem}", file=sys.stderr)
        return 2
    partial = out.with_name(f".{out.name}.partial")
    interval_s = 0.5

    async def exchange(client: Any) -> int:
        after, count, started = 0, 0, time.monotonic()
        status = ""
        with partial.open("wb") as fh:
            while True:
                answer = await client.request("GET", f"/v1/batches/{args.batch_id}/results?after={after}")
                if answer.status != 200 or answer.signature_header is None:
                    partial.unlink(missing_ok=True)
                    return _refused(answer) if answer.status != 200 else 1
                fh.write(answer.body)
                lines = answer.body.count(b"\n")
                count += lines
                status = answer.headers.get("X-Batch-Status", "")
                following = answer.headers.get("X-Batch-Next-After")
                if following is None:
                    break
                after = int(following)
                if not lines and status == "running":  # nothing more yet: the batch is still at work
                    if not args.follow:
                        break
                    await asyncio.sleep(interval_s)
        partial.replace(out)
        if status == "running":
            print(f"batch {args.batch_id} is not finished (still running): {out} holds only the {count} result "
                  "lines written so far; run again with --follow to wait for the end", file=sys.stderr)
            return UNFINISHED
        print(f"{count} result lines in {out} ({time.monotonic() - started:.1f} s); each line carries its own "
              "signature (jws)", file=sys.stderr)
        return 0

    return _run(args, exchange)


def cmd_batch_cancel(args: argparse.Namespace) -> int:
    async def exchange(client: Any) -> int:
        answer = await client.request("POST", f"/v1/batches/{args.batch_id}/cancel")
        if answer.status != 200:
            return _refused(answer)
        print(orjson.dumps(answer.json(), option=orjson.OPT_INDENT_2).decode())  # the document, as `status`
        print(progress_bar(answer.json()), file=sys.stderr)
        return 0

    return _run(args, exchange)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("batch", help="population re-verification (POST /v1/batches …)").add_subparsers(
        dest="batch_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--client", default="anss.asd")
    common.add_argument("--key", help="the client's private key (PEM); default: its dev key")
    common.add_argument("--url", help="gateway base URL (default: from config)")
    s = b.add_parser("submit", parents=[common], help="upload subjects (JSON Lines) and print the batch id")
    s.add_argument("--file", required=True, help='one subject per line: {"idcs": "…"} or {"cin": "…"}')
    s.add_argument("--purpose", default="asd.eligibility")
    s.add_argument("--case-ref-prefix", required=True, help="each subject's case_ref is this + its line number")
    s.add_argument("--check", action="append", help="a check to run (repeatable); default: all allowed")
    s.add_argument("--wait", action="store_true", help="show a live progress bar until the batch ends")
    s.set_defaults(func=cmd_batch_submit)
    st = b.add_parser("status", parents=[common], help="a batch's counts, rate and ETA")
    st.add_argument("batch_id")
    st.add_argument("--follow", action="store_true", help="a live progress bar until the batch ends")
    st.set_defaults(func=cmd_batch_status)
    r = b.add_parser("results", parents=[common], help="write every result line (JSON Lines, each signed)")
    r.add_argument("batch_id")
    r.add_argument("--out", required=True, metavar="FILE")
    r.add_argument("--follow", action="store_true",
                   help="on a batch still running, wait for its remaining lines until it ends (else: write the "
                        "lines so far and exit 3)")
    r.set_defaults(func=cmd_batch_results)
    c = b.add_parser("cancel", parents=[common], help="stop a running batch")
    c.add_argument("batch_id")
    c.set_defaults(func=cmd_batch_cancel)
