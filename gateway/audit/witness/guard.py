"""The gateway's high-water checkpoint and the publication of its checkpoints to witnesses.

``HighWater`` is a file outside the database — beside the checkpoint key — holding the largest checkpoint the
gateway has signed (a C2SP signed note, with the cosignatures it gathered). It is replaced atomically and never
with a smaller one.

``LogGuard`` ties it to the access log:

- ``check()`` (at start, and before every tree head is signed): the database must hold at least the high-water
  size, and its tree at that size must have the high-water root (one inclusion proof of the last leaf). A
  database behind it or diverging from it is corrupt: ``corrupt`` says why, a critical line is logged,
  ``AccessLogCorrupt`` is raised, and it stays corrupt until restarted on a database that passes — the gateway
  then answers 503 ``access_log_corrupt`` and signs nothing.
- ``publish(head)`` (after a head is signed): the head must extend the high-water checkpoint (consistency proof
  from the store); it becomes a checkpoint signed with the gateway's Ed25519 checkpoint key, submitted to the
  configured witnesses (``WitnessClient``), and then — with the cosignatures gathered, however many — becomes
  the new high water, is kept with its head in the access log itself (``AccessLog.save_checkpoint``: the export
  carries it) and in the archive (``CheckpointArchive``), and is given to each ``on_checkpoint`` listener (the
  ``Log-Checkpoint`` header). A witness that holds a larger checkpoint, or one this checkpoint does not extend,
  makes the log corrupt too (and the high water stays).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import aiohttp
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    VerifierKey,
    open_checkpoint,
    sign_checkpoint,
    verifier_key,
)
from gateway.audit.heads import log_id_for
from gateway.audit.merkle import SignedTreeHead, verify_consistency, verify_inclusion
from gateway.audit.store import AccessLog, AccessLogCorrupt
from gateway.audit.witness.client import QuorumNotMet, WitnessClient, Witnessed, WitnessEndpoint
from gateway.config.settings import ConfigError, Settings
from gateway.crypto import keys
from gateway.stores.files import open_sqlite

log = structlog.get_logger("gateway.audit")
T = TypeVar("T")


class HighWater:
    """The high-water checkpoint file; blocking I/O, call it off the event loop."""

    def __init__(self, path: Path, vkey: VerifierKey) -> None:
        self.path, self.vkey = path, vkey

    def read(self) -> tuple[Checkpoint, str] | None:
        """The checkpoint held and its note; ``AccessLogCorrupt`` if the file is not one signed by our key."""
        try:
            note = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise AccessLogCorrupt(f"the high-water checkpoint {self.path} cannot be read: {exc}") from exc
        try:
            return open_checkpoint(note, [self.vkey]), note
        except CheckpointError as exc:
            raise AccessLogCorrupt(f"the high-water checkpoint {self.path} is not ours: {exc}") from exc

    def write(self, note: str) -> None:
        """Replace the file with ``note`` (whole or not at all, synced), unless it already holds a larger size."""
        size = open_checkpoint(note, [self.vkey]).size
        held = self.read()
        if held is not None and held[0].size > size:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        draft = self.path.with_name(f".{self.path.name}.{os.getpid()}.draft")
        with draft.open("w", encoding="utf-8") as fh:
            fh.write(note)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(draft, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class CheckpointArchive:
    """Every checkpoint published, with its cosignatures, by size: one SQLite file of its own."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL,
                cosigners INTEGER NOT NULL, published_at REAL NOT NULL);"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-archive")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_sqlite(self.path, self.SCHEMA, 10_000)
        return self._conn

    async def save(self, size: int, note: str, cosigners: int) -> None:
        await self._run(lambda: self._connection().execute(
            "INSERT INTO checkpoints (size, note, cosigners, published_at) VALUES (?, ?, ?, ?) ON CONFLICT (size) "
            "DO UPDATE SET note = excluded.note, cosigners = excluded.cosigners, published_at = excluded.published_at "
            "WHERE excluded.cosigners >= checkpoints.cosigners", (size, note, cosigners, time.time())))

    async def note(self, size: int) -> str | None:
        row = await self._run(lambda: self._connection().execute(
            "SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone())
        return str(row[0]) if row else None

    async def notes(self, from_size: int = 0) -> list[tuple[int, str]]:
        """Every archived checkpoint of ``from_size`` entries or more, by size: (size, note)."""
        rows = await self._run(lambda: self._connection().execute(
            "SELECT size, note FROM checkpoints WHERE size >= ? ORDER BY size", (from_size,)).fetchall())
        return [(int(r[0]), str(r[1])) for r in rows]

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await self._run(close)
        self._executor.shutdown(wait=True)


class LogGuard:
    """The high-water check and the checkpoint publication of one access log (see the module docstring)."""

    def __init__(self, access_log: AccessLog, origin: str, key: Ed25519PrivateKey, high_water: Path,
                 archive: CheckpointArchive, *, witnesses: Callable[[], WitnessClient | None] = lambda: None) -> None:
        self.access_log, self.origin, self.key = access_log, origin, key
        self.vkey = verifier_key(origin, key)
        self.high_water = HighWater(high_water, self.vkey)
        self.archive = archive
        self.witnesses = witnesses
        self.corrupt: str | None = None
        self.on_checkpoint: list[Callable[[str], object]] = []  # told of each checkpoint published

    def _fail(self, reason: str) -> AccessLogCorrupt:
        if self.corrupt is None:
            self.corrupt = reason
            log.critical("access_log_corrupt", reason=reason, high_water=str(self.high_water.path))
        return AccessLogCorrupt(reason)

    async def latest(self) -> tuple[Checkpoint, str] | None:
        try:
            return await asyncio.to_thread(self.high_water.read)
        except AccessLogCorrupt as exc:
            raise self._fail(str(exc)) from exc

    async def check(self) -> None:
        """Raise ``AccessLogCorrupt`` (and stay corrupt) if the database is behind or diverges from the high
        water."""
        if self.corrupt is not None:
            raise AccessLogCorrupt(self.corrupt)
        held = await self.latest()
        if held is None or held[0].size == 0:
            return
        high = held[0]
        count = await self.access_log.count()
        if count < high.size:
            raise self._fail(f"the access log holds {count} entries, fewer than the {high.size} of the high-water "
                             "checkpoint: entries were removed")
        last = high.size - 1
        try:
            (leaf,) = await self.access_log.leaf_hashes(last, high.size)
            path = await self.access_log.inclusion_proof(last, high.size)
        except (ValueError, IndexError, AccessLogCorrupt) as exc:
            raise self._fail(f"the access log cannot prove its tree of size {high.size}: {exc}") from exc
        if not verify_inclusion(leaf, last, high.size, path, high.root_hash):
            raise self._fail(f"the access log's tree of size {high.size} is not the high-water checkpoint's: "
                             "it was rewritten")

    async def publish(self, head: SignedTreeHead) -> Witnessed | None:
        """Checkpoint ``head``, raise the high water, submit it to the witnesses; the witnessed checkpoint, or
        ``None`` without witnesses. ``AccessLogCorrupt`` if it does not extend the high water or a witness
        holds a larger checkpoint."""
        size, root = head.head.tree_size, head.head.root_hash
        held = await self.latest()
        if held is not None:
            high = held[0]
            if size < high.size:
                raise self._fail(f"a tree head of size {size} was signed below the high water ({high.size})")
            proof = await self.access_log.consistency_proof(high.size, size)
            if not verify_consistency(high.size, size, high.root_hash, root, proof):
                raise self._fail(f"the tree head of size {size} does not extend the high-water checkpoint")
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.origin, self.key)
        client = self.witnesses()
        witnessed: Witnessed | None = None
        if client is not None:
            try:
                witnessed = await client.submit(note, self.access_log)
            except QuorumNotMet as exc:
                witnessed = exc.witnessed
                log.error("checkpoint_quorum_not_met", size=size, error=str(exc))
            for o in witnessed.outcomes:
                if o.ahead is not None:
                    raise self._fail(f"witness {o.witness} holds a checkpoint of size {o.ahead}, larger than the "
                                     f"log's {size}: entries were removed")
                if o.inconsistent:
                    raise self._fail(f"witness {o.witness} found the checkpoint of size {size} inconsistent with "
                                     f"the one it holds: the log was rewritten ({o.error})")
            note = witnessed.note
        await asyncio.to_thread(self.high_water.write, note)
        await self.archive.save(size, note, witnessed.cosigners if witnessed else 0)
        try:  # with its head, in the log: the export carries it (a failure here loses no head, only the copy)
            note = await self.access_log.save_checkpoint(size, note)
        except Exception as exc:
            log.error("checkpoint_not_kept_in_log", size=size, error=f"{type(exc).__name__}: {exc}")
        for listener in self.on_checkpoint:
            listener(note)
        return witnessed


def load_checkpoint_key(path: Path) -> Ed25519PrivateKey:
    """The gateway's Ed25519 checkpoint key (PEM, created once with mode 0600 when absent)."""
    try:
        key = keys.load_or_create(path, "EdDSA").private
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read or create the checkpoint key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the checkpoint key must be Ed25519 (C2SP signed notes)")
    return key


def log_guard(settings: Settings, access_log: AccessLog, session: aiohttp.ClientSession) -> LogGuard:
    """The guard of a gateway's access log as configured (``[audit]``: checkpoint key and origin, high-water
    file, ``[[audit.witnesses]]`` and ``witness_quorum``)."""
    w = settings.witnessing
    client = WitnessClient(session, [WitnessEndpoint(x.url, x.vkey) for x in w.witnesses], w.quorum,
                           timeout_s=w.timeout_s) if w.witnesses else None
    return LogGuard(access_log, w.origin or log_id_for(settings.gateway_id), load_checkpoint_key(
        w.key_path(settings.state_dir)), w.high_water_path(settings.state_dir),
        CheckpointArchive(settings.state_dir / "checkpoints.sqlite3"), witnesses=lambda: client)
