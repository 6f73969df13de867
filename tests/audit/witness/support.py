"""A log for the witness tests: leaves in memory, checkpoints signed with a fixed Ed25519 key, a witness
configuration file on disk, and a real witness server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import checkpoint as cp
from gateway.audit import merkle
from gateway.audit.witness.config import WitnessConfig, load_config, load_witness_key
from gateway.audit.witness.protocol import AddCheckpoint
from gateway.audit.witness.service import RunningWitness, witness_running

if TYPE_CHECKING:
    from tests.gateway.conftest import Stack

ORIGIN = "anss.gov.ma/access-log"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
LOG_VKEY = cp.verifier_key(ORIGIN, LOG_KEY)


class MemoryLog:
    """Leaf hashes in memory; ``fork`` makes a log sharing the first ``keep`` leaves, then other ones."""

    def __init__(self, size: int = 0, *, tag: str = "a") -> None:
        self.leaves: list[bytes] = []
        self.tag = tag
        self.grow(size)

    def grow(self, n: int) -> MemoryLog:
        for _ in range(n):
            self.leaves.append(merkle.leaf_hash(f"{self.tag}-{len(self.leaves)}".encode()))
        return self

    def fork(self, keep: int, tag: str) -> MemoryLog:
        other = MemoryLog(tag=tag)
        other.leaves = self.leaves[:keep]
        other.grow(len(self.leaves) - keep)
        return other

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.leaves[: len(self.leaves) if size is None else size])

    def note(self, size: int | None = None, key: Ed25519PrivateKey = LOG_KEY, origin: str = ORIGIN) -> str:
        size = len(self.leaves) if size is None else size
        return cp.sign_checkpoint(cp.Checkpoint(origin, size, self.root(size)), origin, key)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if not 0 <= old_size <= new_size <= len(self.leaves):
            raise ValueError(f"no consistency proof from {old_size} to {new_size}")
        return merkle.Prover(merkle.SequenceSource(self.leaves)).consistency_proof(old_size, new_size)

    def request(self, old_size: int, size: int | None = None) -> bytes:
        size = len(self.leaves) if size is None else size
        proof = merkle.Prover(merkle.SequenceSource(self.leaves)).consistency_proof(old_size, size)
        return AddCheckpoint(old_size, tuple(proof), self.note(size)).encode()


def write_config(directory: Path, name: str = "cndp.ma/witness", vkeys: tuple[str, ...] | None = None) -> Path:
    path = directory / "witness.toml"
    keys = ", ".join(f'"{k}"' for k in (vkeys or (LOG_VKEY.encode(),)))
    path.write_text(f'name = "{name}"\nlisten = "127.0.0.1:0"\nstate_dir = "state"\n\n'
                    f'[[logs]]\norigin = "{ORIGIN}"\nvkeys = [{keys}]\n', encoding="utf-8")
    return path


def witness_config(directory: Path, name: str = "cndp.ma/witness") -> WitnessConfig:
    return load_config(write_config(directory, name))


@asynccontextmanager
async def running_witness(config: WitnessConfig) -> AsyncIterator[RunningWitness]:
    async with witness_running(config, load_witness_key(config.key_file), port=0) as running:
        yield running


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def ask_verification(stack: Stack, case: str) -> tuple[int, str | None]:
    """One verification through a running gateway: its status and, for a problem, its code."""
    household = stack.population.fixture("deceased_father")
    answer = await stack.client.verify({"idcs": household.mother.idcs}, "asd.eligibility", case)
    document = answer.json()
    return answer.status, document.get("code") if isinstance(document, dict) else None


async def held_size(witness: RunningWitness, origin: str, at_least: int) -> int:
    for _ in range(600):  # the signer's round comes within a second or so; give a busy machine time
        held = await witness.witness.state.held(origin)
        if held is not None and held.size >= at_least:
            return held.size
        await asyncio.sleep(0.05)
    raise AssertionError(f"the witness never reached size {at_least}")
