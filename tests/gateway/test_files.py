"""Secrets the gateway creates for itself: written once, whole, private, the same for every process."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.stores.files import create_once


def test_racing_creators_all_keep_the_first_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret.key"
    contents = [f"{i:04d}".encode() * 1000 for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda c: create_once(path, c), contents))
    assert path.read_bytes() in contents  # one writer's bytes, whole
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no draft left behind
    create_once(path, b"later")
    assert path.read_bytes() != b"later"  # an existing file is never replaced

