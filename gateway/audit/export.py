"""The JSON Lines export of a stored log (docs/merkle-log.md section 6), streamed, for every store.

``merkle.export_lines`` builds the same lines from entries held in memory; this writes them from a store's
rows as they are read, with proofs from a ``Prover`` over the store, and adds the ``pruned`` line: an entry
whose payload was removed by retention appears as its index and leaf hash only.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from gateway.audit.merkle import EXPORT_FORMAT, Prover, SignedTreeHead, TreeHead
from gateway.audit.recompute import NODE_LEVEL
from gateway.audit.store import AccessLogCorrupt
from gateway.crypto.keys import b64url

ExportRow = tuple[int, bytes | None, bytes]  # (index, entry or None once pruned, leaf_hash)


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _entry_text(index: int, entry: object) -> str:
    """The entry as exported: its bytes as UTF-8 (an entry some SQL turned into text is exported as it reads,
    and the verifier then finds it does not match its leaf hash)."""
    text = None
    try:
        text = entry.decode("utf-8") if isinstance(entry, bytes) else entry
        if not isinstance(text, str) or not isinstance(json.loads(text), dict) or "\n" in text or "\r" in text:
            text = None
    except ValueError:
        text = None
    if text is None:
        raise AccessLogCorrupt(f"entry {index} is not a one-line JSON object: it cannot be exported")
    return text


def export_rows(write: Callable[[str], object], rows: Iterable[ExportRow], heads: Sequence[SignedTreeHead],
                prover: Prover, *, inclusion_proofs: bool = True, consistency_proofs: bool = True,
                checkpoints: Mapping[int, str] | None = None) -> None:
    """Write the export of ``rows`` (from index 0) with ``heads`` (by increasing size, the last one covering
    exactly the rows); each line ends with LF. Proofs come from ``prover``, against the last head. A head whose
    size has a note in ``checkpoints`` carries it as its ``checkpoint`` member (the C2SP signed note with its
    cosignatures, docs/merkle-log.md section 6)."""
    notes = checkpoints or {}
    if not heads:
        raise ValueError("an export needs at least one signed tree head")
    sizes = [s.head.tree_size for s in heads]
    if any(a >= b for a, b in itertools.pairwise(sizes)):
        raise ValueError("tree heads must grow strictly")
    log_id, final = heads[0].head.log_id, sizes[-1]
    if any(s.head.log_id != log_id for s in heads):
        raise AccessLogCorrupt("tree heads from different logs")
    pending = list(reversed(heads))
    previous: list[TreeHead] = []

    def emit_heads(size: int) -> None:
        while pending and pending[-1].head.tree_size == size:
            signed = pending.pop()
            line = signed.to_json()
            if (note := notes.get(size)) is not None:
                line["checkpoint"] = note
            write(_line(line) + "\n")
            if consistency_proofs and previous:
                old = previous[0].tree_size
                proof = prover.consistency_proof(old, size)
                write(_line({"type": "consistency", "old_size": old, "new_size": size,
                             "proof": [b64url(p) for p in proof]}) + "\n")
            previous[:] = [signed.head]

    write(_line({"type": "log", "format": EXPORT_FORMAT, "log_id": log_id}) + "\n")
    emit_heads(0)
    expected = 0
    for index, entry, leaf in rows:
        if not isinstance(leaf, bytes):
            raise AccessLogCorrupt(f"entry {index} is not stored as written: run `anss-gateway audit verify`")
        if index != expected or index >= final:
            raise AccessLogCorrupt(f"entry {expected} is missing or the rows run past the last head: run "
                                   "`anss-gateway audit verify`")
        if entry is None:
            write(f'{{"type":"pruned","index":{index},"leaf_hash":"{b64url(leaf)}"}}\n')
        else:  # the entry's exact bytes sit between '"entry":' and the line's final '}'
            text = _entry_text(index, entry)
            write(f'{{"type":"entry","index":{index},"leaf_hash":"{b64url(leaf)}","entry":{text}}}\n')
        if inclusion_proofs:
            proof = prover.inclusion_proof(index, final)
            write(_line({"type": "inclusion", "index": index, "tree_size": final,
                         "proof": [b64url(p) for p in proof]}) + "\n")
        expected += 1
        emit_heads(expected)
    if expected != final:
        raise AccessLogCorrupt(f"the log has {expected} entries but its last signed tree head covers {final}: "
                               "run `anss-gateway audit verify`")


class WindowedLeaves:
    """A ``LeafSource`` reading aligned windows of leaf hashes through ``fetch(start, end)`` and keeping the
    last few: a streamed export asks for the same neighbourhoods over and over."""

    def __init__(self, fetch: Callable[[int, int], Sequence[bytes]], window: int = 4096, keep: int = 8) -> None:
        self.fetch, self.window, self.keep = fetch, window, keep
        self._windows: OrderedDict[int, Sequence[bytes]] = OrderedDict()

    def _window(self, number: int) -> Sequence[bytes]:
        got = self._windows.get(number)
        if got is None:
            got = self.fetch(number * self.window, (number + 1) * self.window)
            self._windows[number] = got
            if len(self._windows) > self.keep:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(number)
        return got

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        out: list[bytes] = []
        position = start
        while position < end:
            number, offset = divmod(position, self.window)
            chunk = self._window(number)[offset:offset + end - position]
            if not chunk:
                break
            out.extend(chunk)
            position += len(chunk)
        return out


class NodeCache(MutableMapping[tuple[int, int], bytes]):
    """``Prover``'s cache over a store's subtree table: stored subtrees are read through ``lookup`` (perfect
    subtrees never change, so they are memoised); anything the prover computes is kept in memory only."""

    def __init__(self, lookup: Callable[[int, int], bytes | None], limit: int = 1 << 16) -> None:
        self.lookup, self.limit = lookup, limit
        self._memo: dict[tuple[int, int], bytes] = {}

    def __getitem__(self, key: tuple[int, int]) -> bytes:
        value = self._memo.get(key)
        if value is None:
            if key[0] < NODE_LEVEL or (value := self.lookup(*key)) is None:
                raise KeyError(key)
            self[key] = value
        return value

    def __setitem__(self, key: tuple[int, int], value: bytes) -> None:
        if len(self._memo) >= self.limit:
            self._memo.clear()
        self._memo[key] = value

    def __delitem__(self, key: tuple[int, int]) -> None:
        del self._memo[key]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._memo)

    def __len__(self) -> int:
        return len(self._memo)
