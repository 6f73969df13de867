"""The access-log store seam (``AccessLog`` protocol) and what verifying it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.audit.record import AccessRecord


@dataclass(frozen=True)
class ChainBreak:
    """The first entry at which the log stops verifying."""

    index: int
    reason: str


class AccessLog(Protocol):
    async def open(self) -> None: ...

    async def append(self, record: AccessRecord) -> int:
        """Durably append; return the entry's index. Raise if the entry could not be written."""
        ...

    async def count(self) -> int: ...

    async def verify(self) -> ChainBreak | None: ...

    async def close(self) -> None: ...
