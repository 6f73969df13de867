"""``store_factory``: every access-log store of ``store_support.IMPLEMENTATIONS``, one test run each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.audit.store_support import IMPLEMENTATIONS, StoreFactory, opened_stores


@pytest.fixture(params=IMPLEMENTATIONS)
async def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    async with opened_stores(request.param, tmp_path) as new:
        yield new
