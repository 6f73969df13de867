"""Checkpoints held outside the access log's database, and whether the local log agrees with them.

Signed heads in the database prove nothing against whoever can rewrite it and delete them; these do:

- the gateway's **high-water checkpoint** (a file beside its checkpoint key: ``witness.guard.HighWater``);
- its **archive** of every checkpoint it published (``state_dir/checkpoints.sqlite3``);
- each **witness**'s latest cosigned checkpoint, read with ``GET <url>/checkpoint?origin=<origin>`` (our read
  endpoint beside C2SP ``tlog-witness``): kept only if cosigned by the verifier key configured for that witness
  and — when the log's checkpoint key is known — signed by it.

Each becomes an ``Anchor`` (where it came from, a size, a root). ``disagreement`` compares them with the local
log: it must hold at least each anchor's size (else entries were removed) and have each anchor's root at that
size (else it was rewritten, or a second root was signed for a size: a fork). A file or answer that cannot be
read or does not verify raises ``AnchorUnreadable`` (the log cannot be checked against it); a high-water file or
archived checkpoint not signed by the log's key raises ``AnchorInvalid`` (someone replaced it).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.audit.checkpoint import (
    CheckpointError,
    VerifierKey,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    verify_cosignatures,
)
from gateway.audit.witness.client import WitnessEndpoint

MAX_NOTE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Anchor:
    """A checkpoint of the log held outside its database."""

    source: str  # for the message: "the high-water checkpoint (path)", "witness cndp.ma/witness", ...
    size: int
    root_hash: bytes


class AnchorUnreadable(Exception):
    """An anchor that cannot be read or verified: the log cannot be checked against it (exit 2)."""


class AnchorInvalid(Exception):
    """A high-water file or archived checkpoint that is not the log's: it was replaced (exit 1)."""


def high_water_anchor(path: Path, vkey: VerifierKey | None) -> Anchor | None:
    """The high-water checkpoint at ``path`` (``None`` if there is no file)."""
    try:
        note = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorUnreadable(f"the high-water checkpoint {path} cannot be read: {exc}") from exc
    if vkey is None:
        raise AnchorUnreadable(f"the high-water checkpoint {path} cannot be checked: the checkpoint key is missing")
    try:
        checkpoint = open_checkpoint(note, [vkey])
    except CheckpointError as exc:
        raise AnchorInvalid(f"the high-water checkpoint {path} is not signed by the log's checkpoint key "
                            f"({exc})") from exc
    return Anchor(f"the high-water checkpoint ({path})", checkpoint.size, checkpoint.root_hash)


def archived_anchors(path: Path, vkey: VerifierKey | None) -> list[Anchor]:
    """Every checkpoint in the gateway's archive at ``path`` (none if there is no file)."""
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AnchorUnreadable(f"the checkpoint archive {path} cannot be read: {exc}") from exc
    if rows and vkey is None:
        raise AnchorUnreadable(f"the checkpoint archive {path} cannot be checked: the checkpoint key is missing")
    found = []
    for size, note in rows:
        try:
            checkpoint = open_checkpoint(str(note), [vkey] if vkey else [])
        except CheckpointError as exc:
            raise AnchorInvalid(f"the archived checkpoint of size {size} in {path} is not signed by the log's "
                                f"checkpoint key ({exc})") from exc
        if checkpoint.size != size:
            raise AnchorInvalid(f"the archived checkpoint filed under size {size} in {path} is of size "
                                f"{checkpoint.size}")
        found.append(Anchor(f"the archived checkpoint ({path})", checkpoint.size, checkpoint.root_hash))
    return found


async def witness_anchor(session: aiohttp.ClientSession, witness: WitnessEndpoint, origin: str,
                         log_vkey: VerifierKey | None, timeout_s: float) -> Anchor | None:
    """The latest checkpoint ``witness`` cosigned for ``origin`` (``None`` if it holds none)."""
    name = witness.vkey.name
    url = witness.url.rstrip("/") + "/checkpoint"
    try:
        async with session.get(url, params={"origin": origin},
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            body = await response.content.read(MAX_NOTE_BYTES + 1)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise AnchorUnreadable(f"witness {name} at {witness.url} cannot be reached ({type(exc).__name__})") from exc
    if status == 404:
        return None
    if status != 200 or len(body) > MAX_NOTE_BYTES:
        raise AnchorUnreadable(f"witness {name} at {witness.url} answered HTTP {status} to GET /checkpoint")
    try:
        note = body.decode("utf-8")
        checkpoint = parse_checkpoint(parse_note(note).text)
        if not verify_cosignatures(note, [witness.vkey]):
            raise CheckpointError("no cosignature by its configured key")
        if log_vkey is not None:
            open_checkpoint(note, [log_vkey])
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise AnchorUnreadable(f"witness {name}'s checkpoint does not verify: {exc}") from exc
    if checkpoint.origin != origin:
        raise AnchorUnreadable(f"witness {name} answered a checkpoint of another origin ({checkpoint.origin!r})")
    return Anchor(f"the checkpoint cosigned by witness {name}", checkpoint.size, checkpoint.root_hash)


async def witness_anchors(witnesses: Sequence[WitnessEndpoint], origin: str, log_vkey: VerifierKey | None,
                          timeout_s: float) -> list[Anchor]:
    """Every witness's latest cosigned checkpoint, asked concurrently; the first failure raises."""
    if not witnesses:
        return []
    async with aiohttp.ClientSession() as session:
        found = await asyncio.gather(*(witness_anchor(session, w, origin, log_vkey, timeout_s) for w in witnesses))
    return [a for a in found if a is not None]


def disagreement(anchors: Sequence[Anchor], count: int, roots: Mapping[int, bytes]) -> str | None:
    """The first anchor the local log (``count`` entries, ``roots`` by size) contradicts, as one line."""
    for anchor in anchors:
        if anchor.size > count:
            return (f"the log holds {count} entries, fewer than the {anchor.size} of {anchor.source}: entries "
                    "were removed")
        if anchor.size and roots.get(anchor.size) != anchor.root_hash:
            return (f"the log's tree of size {anchor.size} is not the one of {anchor.source} (another root): the "
                    "log was rewritten, or a second root was signed for that size (a fork)")
    return None
