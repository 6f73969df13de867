"""``audit verify`` beyond the recomputation: what the database alone cannot prove about itself.

Once every entry, subtree and signed head in the database recomputes (``LogLocation.verify``), ``verify_beyond``
checks, in this order, and returns the first ``Finding``:

1. the **anchors** outside the database (``gateway.audit.anchors``): each witness's cosigned checkpoint (the
   configured ``[[audit.witnesses]]`` and any given on the command line), the high-water file, the checkpoint
   archive — the log must be at least as long as each and have its root at its size;
2. the **checkpoints kept with the heads** (the log's ``checkpoints`` table): each a signed note by the log's
   checkpoint key (when this command can read it), of the size it is filed under, with the root the log has at
   that size; every cosignature line by a configured witness's key must verify;
3. the **cadence** (``gateway.audit.cadence``): no entries without any signed head, and no latest head older
   than ``tree_head_interval_s`` / ``tree_head_max_entries`` allow (plus ``slack_s``) while entries follow it.

Whose keys verify the heads is decided before (``heads.tree_head_keys``: in production, configured files and
JWKS documents only). ``load_jwks`` reads a JWKS document from a file or an http(s) URL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.anchors import (
    Anchor,
    AnchorInvalid,
    AnchorUnreadable,
    archived_anchors,
    disagreement,
    high_water_anchor,
    witness_anchors,
)
from gateway.audit.cadence import Cadence, entry_time, late_heads
from gateway.audit.checkpoint import (
    CheckpointError,
    VerifierKey,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    verifier_key,
    verify_cosignatures,
)
from gateway.audit.heads import keys_from_jwks, log_id_for, read_jwks_document
from gateway.audit.witness.client import WitnessEndpoint
from gateway.config.settings import ConfigError, Settings
from gateway.crypto import keys

if TYPE_CHECKING:
    from gateway.stores.backends import LogLocation

T = TypeVar("T")
MAX_JWKS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """What ``verify_beyond`` found: ``broken`` (exit 1) or, if not, the log could not be checked (exit 2)."""

    broken: bool
    message: str


@dataclass(frozen=True)
class Checked:
    """What was compared, for the summary line of a log that verifies."""

    anchors: tuple[Anchor, ...]


@dataclass(frozen=True)
class BeyondOptions:
    now: float
    slack_s: float = 60.0
    witnesses: tuple[WitnessEndpoint, ...] = ()  # besides the configured ones
    configured_witnesses: bool = True
    local_checkpoints: bool = True  # the high-water file and the archive of the configured state directory


def run_blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from blocking code: on this thread, or — when this thread already runs an
    event loop (a command called from async code) — on a thread of its own, with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def checkpoint_origin(settings: Settings) -> str:
    return settings.witnessing.origin or log_id_for(settings.gateway_id)


def log_checkpoint_key(settings: Settings) -> VerifierKey | None:
    """The verifier key of the log's checkpoint key, read (never created) from the configured file."""
    path = settings.witnessing.key_path(settings.state_dir)
    if not path.exists():
        return None
    try:
        private = keys.load_private_pem(path).private
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint key ({exc})") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the checkpoint key must be Ed25519")
    origin = checkpoint_origin(settings)
    return verifier_key(origin, private)


def verify_beyond(settings: Settings, where: LogLocation, options: BeyondOptions) -> Finding | Checked:
    """The first finding beyond the recomputation (see the module docstring), or what was checked."""
    witnesses = tuple(WitnessEndpoint(w.url, w.vkey) for w in settings.witnessing.witnesses
                      if options.configured_witnesses) + options.witnesses
    vkey = log_checkpoint_key(settings) if witnesses or options.local_checkpoints else None
    try:
        found = run_blocking(lambda: witness_anchors(witnesses, checkpoint_origin(settings), vkey,
                                                     settings.witnessing.timeout_s)) if witnesses else []
        if options.local_checkpoints:
            high = high_water_anchor(settings.witnessing.high_water_path(settings.state_dir), vkey)
            found += [high] if high else []
            found += archived_anchors(settings.state_dir / "checkpoints.sqlite3", vkey)
    except AnchorInvalid as exc:
        return Finding(True, str(exc))
    except AnchorUnreadable as exc:
        return Finding(False, str(exc))
    status = where.status()
    problem = disagreement(found, status.entries, where.roots(a.size for a in found))
    if problem is not None:
        return Finding(True, problem)
    problem = stored_checkpoint_problem(where, vkey, tuple(w.vkey for w in witnesses))
    if problem is not None:
        return Finding(True, problem)
    cadence = Cadence(settings.tree_head_interval_s, settings.tree_head_max_entries, options.slack_s)
    latest = status.latest.head if status.latest is not None else None
    signed = latest.tree_size if latest is not None else 0
    if status.entries > signed:
        nth = signed + cadence.max_entries - 1
        late = late_heads(status.entries, latest, entry_time(where.entry(signed)), cadence, options.now,
                          at_max_entries=entry_time(where.entry(nth)) if nth < status.entries else None)
        if late is not None:
            return Finding(True, late)
    return Checked(tuple(found))


def stored_checkpoint_problem(where: LogLocation, log_vkey: VerifierKey | None,
                              witness_vkeys: tuple[VerifierKey, ...]) -> str | None:
    """What is wrong with the checkpoints the log keeps beside its heads (step 2 of the module), or ``None``."""
    stored = where.checkpoints()
    roots = where.roots(size for size, _ in stored)
    for size, note in stored:
        try:
            checkpoint = (open_checkpoint(note, [log_vkey]) if log_vkey is not None
                          else parse_checkpoint(parse_note(note).text))
        except CheckpointError as exc:
            signed = "not signed by the log's checkpoint key" if log_vkey is not None else "malformed"
            return f"the checkpoint kept with the tree head of size {size} is {signed} ({exc})"
        if checkpoint.size != size or roots.get(size) != checkpoint.root_hash:
            return (f"the checkpoint kept with the tree head of size {size} states size {checkpoint.size} and "
                    "another root than the log has at that size")
        try:
            verify_cosignatures(note, witness_vkeys)
        except CheckpointError as exc:
            return f"a witness's cosignature on the checkpoint of size {size} does not verify ({exc})"
    return None


def load_jwks(source: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """A JWKS document from a file, or fetched from an http(s) URL; ``ConfigError`` if it holds no usable key."""
    if not source.startswith(("http://", "https://")):
        return read_jwks_document(Path(source))

    async def fetch() -> bytes:
        async with aiohttp.ClientSession() as session, session.get(
                source, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.status != 200:
                raise ConfigError(f"{source}: HTTP {response.status}, not a JWKS")
            body = await response.content.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ConfigError(f"{source}: larger than {MAX_JWKS_BYTES} bytes, not a JWKS")
            return body

    try:
        document = json.loads(run_blocking(fetch))
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        raise ConfigError(f"{source}: not a readable JWKS ({type(exc).__name__}: {exc})") from exc
    if not isinstance(document, dict) or not keys_from_jwks(document):
        raise ConfigError(f"{source}: no Ed25519 or P-256 public key in this JWKS")
    return document
