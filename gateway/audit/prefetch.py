"""Running the shared ``Prover`` (gateway.audit.merkle) over a database reached through an async driver.

The prover reads leaf hashes and stored subtrees synchronously, as it goes; an async store cannot answer such
calls. But what the prover reads depends only on sizes and indices, never on hash values. So ``prove`` runs it
over placeholders first, which lists exactly the leaves and stored subtrees it needs, fetches them (one query
each), and runs it again on the real hashes. A subtree missing from the store (an incomplete or tampered table)
is hashed from its halves, read in a further round: a damaged store costs more round trips, never a wrong
answer, and a leaf that does not exist is an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import TypeVar

from gateway.audit.merkle import HASH_SIZE, Prover
from gateway.audit.recompute import NODE_LEVEL
from gateway.audit.store import AccessLogCorrupt

T = TypeVar("T")
Key = tuple[int, int]  # (level, index) of a perfect subtree
PLACEHOLDER = b"\x00" * HASH_SIZE
MAX_ROUNDS = 64  # a subtree of 2^63 leaves is hashed from its halves in fewer rounds than this


class _Pass(MutableMapping[Key, bytes]):
    """One run of the prover: a subtree cache and a leaf source over what is known so far, noting the rest."""

    def __init__(self, nodes: dict[Key, bytes], absent: set[Key], leaves: dict[int, bytes]) -> None:
        self.nodes, self.absent, self.known_leaves = nodes, absent, leaves
        self.local: dict[Key, bytes] = {}
        self.wanted_nodes: set[Key] = set()
        self.wanted_leaves: set[int] = set()

    def __getitem__(self, key: Key) -> bytes:
        found = self.local.get(key) or self.nodes.get(key)
        if found is not None:
            return found
        if key[0] < NODE_LEVEL or key in self.absent:  # not stored: the prover hashes it from below
            raise KeyError(key)
        self.wanted_nodes.add(key)
        return PLACEHOLDER

    def __setitem__(self, key: Key, value: bytes) -> None:
        self.local[key] = value

    def __delitem__(self, key: Key) -> None:
        del self.local[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self.local)

    def __len__(self) -> int:
        return len(self.local)

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        for index in range(start, end):
            leaf = self.known_leaves.get(index)
            if leaf is None:
                self.wanted_leaves.add(index)
                leaf = PLACEHOLDER
            out.append(leaf)
        return out


async def prove(compute: Callable[[Prover], T],
                fetch_nodes: Callable[[Sequence[Key]], Awaitable[dict[Key, bytes]]],
                fetch_leaves: Callable[[Sequence[int]], Awaitable[dict[int, bytes]]]) -> T:
    """``compute(prover)`` over the store behind ``fetch_nodes`` and ``fetch_leaves`` (see the module
    docstring). Errors ``compute`` raises on its arguments (a bad index or size) come from the first pass,
    before anything is read."""
    nodes: dict[Key, bytes] = {}
    absent: set[Key] = set()
    leaves: dict[int, bytes] = {}
    for _ in range(MAX_ROUNDS):
        run = _Pass(nodes, absent, leaves)
        result = compute(Prover(run, run, batch_level=NODE_LEVEL))
        if not run.wanted_nodes and not run.wanted_leaves:
            return result
        if run.wanted_nodes:
            wanted = sorted(run.wanted_nodes)
            found = await fetch_nodes(wanted)
            nodes.update((k, v) for k, v in found.items() if isinstance(v, bytes) and len(v) == HASH_SIZE)
            absent.update(k for k in wanted if k not in nodes)
        if run.wanted_leaves:
            wanted_leaves = sorted(run.wanted_leaves)
            got = await fetch_leaves(wanted_leaves)
            missing = [i for i in wanted_leaves if not _is_hash(got.get(i))]
            if missing:
                raise AccessLogCorrupt(f"entry {missing[0]} is missing or not stored as written: run "
                                       "`anss-gateway audit verify`")
            leaves.update(got)
    raise AccessLogCorrupt("the stored tree cannot be read: run `anss-gateway audit verify`")


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indices as ``[start, end)`` runs: the prover reads leaves in runs of up to 64."""
    runs: list[tuple[int, int]] = []
    for index in sorted(indices):
        if runs and runs[-1][1] == index:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs
