"""The replay cache: owns "has this client assertion been used before?".

A client assertion is single-use: its ``jti`` may be presented once while the assertion is alive. The
caller (after verifying the assertion) asks ``first_use(client_id, jti, expires_at)``, where
``expires_at`` is the last moment (Unix time, seconds) any replica would still accept it — its ``exp``
plus the clock leeway. ``True`` means first use: go on; ``False`` means replay: refuse. An exception
means the cache could not answer: fail closed (refuse), never treat it as a first use.

Two implementations pass the same contract tests (``tests/stores``):

- ``SqliteReplayCache``, the embedded default: one row per (client id, SHA-256 of the jti) under a PRIMARY
  KEY; a replay is the key conflict. A conflicting row whose expiry has passed is taken over in the same
  statement (``INSERT … ON CONFLICT DO UPDATE … WHERE expired``), so reuse after expiry works and the
  decision is one atomic statement. WAL mode and SQLite's write lock make several processes on one file
  safe: they are serialised. Each transaction also deletes a bounded number of expired rows, so the table
  holds little more than the live assertions. Where the machine says which boot it is in (Linux's
  ``boot_id``), a call is decided at once on the event loop, in a transaction of its own: a handful of
  small statements under ``synchronous=NORMAL``, which writes to the WAL without waiting for the disk, and
  which never waits for a lock (``busy_timeout`` 0; ``gateway.stores.on_loop`` takes such steps off the
  loop for a while after a slow one). When the write lock is held — by another process, or by this one's
  thread — or anywhere the boot id is missing, the call goes to one dedicated thread instead
  (like the access log) that waits for the lock (``busy_timeout``), where concurrent calls share one
  transaction (group commit); the thread also checkpoints the WAL (never the event loop).
- ``RedisReplayCache``, for several replicas: ``SET <prefix><sha256> 1 NX PX <ttl>``; the key expires by
  itself. ``PX`` (relative) rather than ``EXAT``: the remaining lifetime is computed on the gateway's
  clock — the clock that checked ``exp`` — so an offset of the Redis server's wall clock cannot shorten
  it, and delivery delays only lengthen it; it is rounded *up* to the millisecond.

The epoch (SQLite): in WAL mode, a transaction committed under ``synchronous=NORMAL`` survives the process
being killed (its pages are in the operating system's cache) but may roll back if the machine loses power
or its kernel crashes — that is, only across a restart of the machine. So the file keeps the boot id of the
machine that last opened it (written with ``synchronous=FULL``): a process that opens it under another boot
id starts an epoch ``E`` (its clock at opening, logged ``replay_epoch_started``), stored in the same
durable transaction, and every process refuses an assertion whose ``iat`` is below ``E + leeway`` exactly
as for Redis below. After any restart of the machine, clean or not, new assertions are therefore refused
for ``leeway`` seconds once. Without a boot id, every transaction is ``synchronous=FULL`` and there is no
epoch. A new (or deleted) file has no history and starts none.

The epoch (Redis): a Redis that restarts without persistence, or whose keys are lost otherwise, forgets
every assertion used so far, and a captured one would be answered again. So the same ``MULTI`` that sets
the jti key also runs ``SET <prefix>epoch <now> NX`` and reads it back: the epoch key holds the time the
key set was (re)created and vanishes with it. An assertion used before the reset was accepted at a
gateway time before the epoch ``E``, so its ``iat`` is below ``E + leeway`` (an ``iat`` further in the
future is refused by the assertion check). Every assertion whose ``iat`` is below ``E + leeway`` is
therefore refused with ``ReplayHistoryLost`` — whether or not its key is new — and it stays refused until
it expires; one signed at or after ``E + leeway`` is decided by its key as usual. The cost is a window of
``leeway`` seconds after a reset (and after the very first start on an empty Redis) in which new
assertions are refused too; the refusal says when to retry. A change of epoch seen by a running process
is logged (``replay_epoch_changed``).

The epoch key alone cannot see a server that kept it but lost later keys: a restart that lost the last
second of writes under ``appendfsync everysec``, a failover to a replica that lagged. So each new connection
first reads the server's ``run_id`` (``INFO server``; it changes with every server process): when a running
process finds another ``run_id`` than before, it starts a new epoch itself (``SET <prefix>epoch <now>``,
logged ``replay_cache_server_changed``) before that connection carries any check. A process that never saw
the old server cannot tell; the Redis requirements in docs/security.md cover that case.

Keys never hold raw client-chosen bytes: the jti (and, for Redis, the client id) is hashed with SHA-256
over an unambiguous encoding, so ``("a:b", "c")`` and ``("a", "b:c")`` stay distinct and every key has a
fixed size. An ``expires_at`` already in the past is retained for ``MIN_RETENTION_S`` so that a call is
never silently forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import structlog
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError

from gateway.stores.files import open_sqlite
from gateway.stores.on_loop import LoopConnection, LoopGuard
from gateway.stores.redis import redis_client

__all__ = [
    "EPOCH_KEY",
    "MIN_RETENTION_S",
    "RedisReplayCache",
    "ReplayCache",
    "ReplayHistoryLost",
    "SqliteReplayCache",
    "current_boot_id",
    "replay_digest",
]

MIN_RETENTION_S = 1.0
EPOCH_KEY = "epoch"  # under the cache's prefix; the other keys are 64 hex digits, so it cannot collide

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS replay_cache (
    client BLOB NOT NULL,
    jti BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (client, jti)
);
CREATE INDEX IF NOT EXISTS replay_cache_expiry ON replay_cache (expires_at);
CREATE TABLE IF NOT EXISTS replay_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

# One statement decides: a new row is inserted (1 change); a live conflicting row is left alone (0 changes);
# an expired conflicting row is taken over (1 change).
FIRST_USE = """
INSERT INTO replay_cache (client, jti, expires_at) VALUES (?, ?, ?)
ON CONFLICT (client, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE replay_cache.expires_at <= ?
"""

PURGE = """
DELETE FROM replay_cache WHERE rowid IN (
    SELECT rowid FROM replay_cache WHERE expires_at <= ? ORDER BY expires_at LIMIT ?
)
"""


@runtime_checkable
class ReplayCache(Protocol):
    """Remembers each (client, jti) until it expires. Implementations are safe under concurrency."""

    async def open(self) -> None: ...

    async def first_use(self, client_id: str, jti: str, expires_at: float, issued_at: float | None = None) -> bool:
        """True the first time (client, jti) is seen while unexpired; False on a replay. Atomic.

        Raises ``ReplayHistoryLost`` when the cache lost its memory after ``issued_at`` (see the module).
        """
        ...

    async def close(self) -> None: ...


class ReplayHistoryLost(Exception):
    """The cache was reset after this assertion may have been used: it cannot tell, so it refuses.

    ``accept_from`` is the earliest ``iat`` it accepts again (epoch + leeway, Unix time).
    """

    def __init__(self, epoch: float, accept_from: float) -> None:
        super().__init__(f"the replay cache was reset at {epoch:.3f}; assertions issued before "
                         f"{accept_from:.3f} are refused")
        self.epoch = epoch
        self.accept_from = accept_from


def _utf8(value: str) -> bytes:
    # JSON may carry lone surrogates ("\ud800"); they must hash, not raise.
    return value.encode("utf-8", "surrogatepass")


def replay_digest(client_id: str, jti: str) -> bytes:
    """SHA-256 over the length-prefixed client id and the jti: fixed size, unambiguous."""
    client = _utf8(client_id)
    return hashlib.sha256(len(client).to_bytes(4, "big") + client + _utf8(jti)).digest()


def _jti_digest(jti: str) -> bytes:
    return hashlib.sha256(_utf8(jti)).digest()


def _expiry(expires_at: float) -> float:
    """Checked here, in the caller's task, so that one bad call cannot fail the others in its batch."""
    try:
        value = float(expires_at)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"expires_at must be a finite Unix time, not {expires_at!r}")
    return value


_Pending = tuple[bytes, bytes, float, asyncio.Future[bool], asyncio.AbstractEventLoop]


def current_boot_id() -> str | None:
    """The running kernel's boot id (Linux; it changes with every start of the machine), else ``None``."""
    try:
        return BOOT_ID_PATH.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


class _Opened(NamedTuple):
    epoch: float | None  # the epoch in force (None: the file has never been through a restart of the machine)
    started: bool  # this process started it (the file was last opened under another boot id)
    fast: LoopConnection | None  # the event loop's connection (None: no boot id, every call on the thread)


class SqliteReplayCache:
    """The embedded replay cache: one SQLite file; calls decided on the event loop when the write lock is free,
    else on one dedicated thread per instance; see the module."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000, purge_batch: int = 64, leeway_s: float = 30.0,
                 boot_id: Callable[[], str | None] = current_boot_id, checkpoint_every: int = 256,
                 on_loop: LoopGuard | None = None) -> None:
        self.path = path
        self.leeway_s = leeway_s
        self.epoch: float | None = None
        self._busy_timeout_ms = busy_timeout_ms
        self._purge_batch = purge_batch
        self._boot_id = boot_id
        self._checkpoint_every = checkpoint_every
        self._on_loop = on_loop if on_loop is not None else LoopGuard("replay_cache")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-cache")
        self._conn: sqlite3.Connection | None = None
        self._fast: LoopConnection | None = None
        self._since_checkpoint = 0
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._closed = False

    async def open(self) -> None:
        opened = await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        self.epoch, self._fast = opened.epoch, opened.fast
        if opened.started:
            log.warning("replay_epoch_started", epoch=opened.epoch, leeway_s=self.leeway_s,
                        reason="the machine restarted since the replay cache was last opened")

    def _open(self) -> _Opened:
        if self._conn is not None:
            return _Opened(self.epoch, False, self._fast)
        conn = open_sqlite(self.path, SCHEMA, self._busy_timeout_ms)  # synchronous=FULL
        try:
            boot = self._boot_id()
            conn.execute("BEGIN IMMEDIATE")
            meta = dict(conn.execute("SELECT key, value FROM replay_meta").fetchall())
            epoch = float(meta["epoch"]) if "epoch" in meta else None
            started = boot is not None and meta.get("boot_id") not in (None, boot)
            if started:
                epoch = time.time()
                conn.execute("INSERT OR REPLACE INTO replay_meta (key, value) VALUES ('epoch', ?)", (repr(epoch),))
            if boot is not None:
                conn.execute("INSERT OR REPLACE INTO replay_meta (key, value) VALUES ('boot_id', ?)", (boot,))
            conn.execute("COMMIT")  # durable (FULL) before any call is decided under NORMAL
            fast = None
            if boot is not None:
                conn.execute("PRAGMA synchronous=NORMAL")  # (checkpoints sync the disk: only the thread runs them)
                fast = LoopConnection(self.path, self._on_loop, ("synchronous=NORMAL", "wal_autocheckpoint=0"))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return _Opened(epoch, started, fast)

    async def first_use(self, client_id: str, jti: str, expires_at: float, issued_at: float | None = None) -> bool:
        item = (_utf8(client_id), _jti_digest(jti), _expiry(expires_at))
        if self._closed:
            raise RuntimeError("the replay cache is closed")
        epoch = self.epoch
        if epoch is not None and issued_at is not None and issued_at < epoch + self.leeway_s:
            raise ReplayHistoryLost(epoch, epoch + self.leeway_s)
        decided = self._fast.run(lambda conn: self._decide_now(conn, *item)) if self._fast is not None else None
        if decided is not None:
            self._since_checkpoint += 1
            if self._since_checkpoint >= self._checkpoint_every:
                self._since_checkpoint = 0
                self._executor.submit(self._checkpoint)
            return decided
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            self._pending.append((*item, future, loop))
            first = len(self._pending) == 1
        if first:  # one flush decides everything queued meanwhile, in one transaction (group commit); it wakes the
            self._executor.submit(self._flush)  # loop once to settle (a submit, not run_in_executor: no second wake-up)
        return await future

    def _decide_now(self, conn: sqlite3.Connection, client_id: bytes, digest: bytes, expires_at: float) -> bool:
        """One call's own transaction, on the event loop (``LoopConnection.run``: busy there means the thread)."""
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        keep_until = max(expires_at, now + MIN_RETENTION_S)
        first: bool = conn.execute(FIRST_USE, (client_id, digest, keep_until, now)).rowcount == 1
        conn.execute(PURGE, (now, self._purge_batch))
        conn.execute("COMMIT")
        return first

    def _checkpoint(self) -> None:
        """On the thread: copy the WAL back into the file (passive: nobody waits for it)."""
        try:
            if self._conn is not None:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # the next one tries again; SQLite also checkpoints the thread's commits
            log.warning("replay_cache_checkpoint_failed", error=str(exc))

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            conn = self._conn
            if conn is None:
                raise RuntimeError("open() the replay cache first")
            now = time.time()
            results: list[bool] = []
            conn.execute("BEGIN IMMEDIATE")
            for client_id, digest, expires_at, _, _ in batch:
                keep_until = max(expires_at, now + MIN_RETENTION_S)
                results.append(conn.execute(FIRST_USE, (client_id, digest, keep_until, now)).rowcount == 1)
            conn.execute(PURGE, (now, max(self._purge_batch, 2 * len(batch))))
            conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn is not None and self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # every caller must still get its answer
                    self._conn.execute("ROLLBACK")
            _answer([(future, loop, exc) for _, _, _, future, loop in batch])
            return
        _answer([(future, loop, result) for (_, _, _, future, loop), result in zip(batch, results, strict=True)])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _run_id(info: object) -> str | None:
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.removeprefix("run_id:").strip() or None
    return None


def _answer(outcomes: list[tuple[asyncio.Future[bool], asyncio.AbstractEventLoop, bool | BaseException]]) -> None:
    """From the cache's thread: one wake-up per event loop for a whole group commit, not one per assertion."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool | BaseException]]] = {}
    for future, loop, outcome in outcomes:
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[bool], bool | BaseException]]) -> None:
    for future, outcome in settled:
        if isinstance(outcome, BaseException):
            _set_exception(future, outcome)
        else:
            _set_result(future, outcome)


def _set_result(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[bool], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class RedisReplayCache:
    """The shared replay cache for several replicas: one self-expiring Redis key per (client, jti), and the
    epoch key that tells when the key set was last (re)created; see the module."""

    def __init__(
        self,
        url: str,
        prefix: str = "anss:jti:",
        *,
        leeway_s: float = 30.0,
        timeout_s: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        self.prefix = prefix
        self.leeway_s = leeway_s
        self.epoch_key = prefix + EPOCH_KEY
        self.known_epoch: float | None = None  # the last epoch this process saw
        self.known_server: str | None = None  # the run_id of the Redis server process this process talks to
        self._redis = redis_client(url, timeout_s, max_connections, on_connect=self._on_connect)

    def key(self, client_id: str, jti: str) -> str:
        return self.prefix + replay_digest(client_id, jti).hex()

    async def open(self) -> None:
        await self._redis.ping()  # fail at start-up, not on the first request
        await self._warn_about_settings()

    async def first_use(self, client_id: str, jti: str, expires_at: float, issued_at: float | None = None) -> bool:
        now = time.time()
        ttl_ms = max(math.ceil((_expiry(expires_at) - now) * 1000), math.ceil(MIN_RETENTION_S * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI … EXEC: one consistent view
            pipe.set(self.epoch_key, repr(now).encode(), nx=True)
            pipe.get(self.epoch_key)
            pipe.set(self.key(client_id, jti), b"1", nx=True, px=ttl_ms)
            _, raw_epoch, first = await pipe.execute()
        epoch = self._seen_epoch(raw_epoch)
        # floor: an iat up to now + leeway is accepted (gateway/trust/assertion.py), fractions of a second included
        if issued_at is not None and math.floor(issued_at) < epoch + self.leeway_s:
            raise ReplayHistoryLost(epoch, epoch + self.leeway_s)
        return bool(first)

    async def _on_connect(self, connection: Connection) -> None:
        """Each new connection: the handshake, then whether this is still the server process seen before."""
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        try:
            run_id = _run_id(await connection.read_response())
        except ResponseError:  # INFO renamed or disabled on this server: nothing to compare, the epoch still holds
            return
        if run_id is None:
            return
        if self.known_server is not None and run_id != self.known_server:
            await connection.send_command("SET", self.epoch_key, repr(time.time()))
            await connection.read_response()
            log.warning("replay_cache_server_changed", previous_run_id=self.known_server, run_id=run_id)
        self.known_server = run_id

    def _seen_epoch(self, raw: object) -> float:
        try:
            epoch = float(raw.decode("ascii") if isinstance(raw, bytes) else str(raw))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"the replay epoch key {self.epoch_key!r} does not hold a time") from exc
        if not math.isfinite(epoch):
            raise ValueError(f"the replay epoch key {self.epoch_key!r} does not hold a time")
        if epoch != self.known_epoch:
            if self.known_epoch is not None:  # the key set was lost and recreated while this process ran
                log.warning("replay_epoch_changed", previous_epoch=self.known_epoch, epoch=epoch,
                            refused_until=epoch + self.leeway_s)
            self.known_epoch = epoch
        return epoch

    async def _warn_about_settings(self) -> None:
        """Say at start-up when this Redis can lose used assertions unnoticed (docs/security.md)."""
        try:
            policy = await self._redis.config_get("maxmemory-policy")
            persistence = await self._redis.config_get("appendonly")
        except Exception:  # CONFIG is often disabled on managed servers: nothing to say then
            return
        if policy.get("maxmemory-policy", "noeviction") != "noeviction":
            log.warning("replay_cache_redis_evicts", maxmemory_policy=policy.get("maxmemory-policy"),
                        required="noeviction")
        if persistence.get("appendonly", "yes") != "yes":
            log.warning("replay_cache_redis_not_persistent", appendonly=persistence.get("appendonly"),
                        required="appendonly yes, appendfsync everysec or always")

    async def close(self) -> None:
        await self._redis.aclose()
