"""The reference verification of cosignatures printed in docs/merkle-log.md ("Witnesses"), run as printed on a
real export and the checkpoints a real witness cosigned, written by ``anss-gateway witness checkpoints``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import SqliteAccessLog
from gateway.audit import checkpoint as cp
from gateway.audit.heads import TreeHeadSigner
from gateway.audit.witness.config import load_config
from gateway.audit.witness.guard import log_guard
from gateway.cli.main import main
from gateway.config.settings import load
from gateway.config.witnesses import WitnessingSettings, WitnessSetting
from tests.audit.store_support import KEY, LOG_ID
from tests.audit.witness.support import running_witness, write_config
from tests.audit.witness.test_guard import fill

DOC = Path(__file__).resolve().parents[3] / "docs" / "merkle-log.md"


def reference() -> Callable[..., int]:
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text[text.index("### Verifying cosignatures"):], re.S)
    assert code
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)  # as printed
    verify: Callable[..., int] = namespace["verify_witnessed"]
    return verify


VERIFY = reference()


@pytest.fixture
async def material(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """An export up to size 30 and the checkpoints of sizes 10, 20, 30, each cosigned by one witness."""
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    settings = load()
    capsys.readouterr()
    assert main(["witness", "log-key"]) == 0
    printed = capsys.readouterr().out
    origin_line, vkeys_line = printed.strip().splitlines()
    log_vkey = json.loads(vkeys_line.removeprefix("vkeys = "))[0]
    (tmp_path / "witness").mkdir()
    config = write_config(tmp_path / "witness", vkeys=(log_vkey,))
    config.write_text(config.read_text(encoding="utf-8").replace('"anss.gov.ma/access-log"',
                                                                 origin_line.removeprefix("origin = ")))
    async with running_witness(load_config(config)) as witness, aiohttp.ClientSession() as session:
        settings = replace(settings, witnessing=WitnessingSettings(
            witnesses=(WitnessSetting(witness.url, witness.witness.vkey),), quorum=1))
        store = SqliteAccessLog(settings.audit_database)
        await store.open()
        guard = log_guard(settings, store, session)
        try:
            signer = TreeHeadSigner(store, lambda: KEY, LOG_ID, interval_s=3600, max_entries=10, guard=guard)
            for end in (10, 20, 30):
                await fill(store, end - 10, end)
                assert await signer.tick() is not None
            out = io.StringIO()
            await store.export(out)
        finally:
            await guard.archive.close()
            await store.close()
        witness_vkey = witness.witness.vkey.encode()
    command = ["witness", "checkpoints", "--out", str(tmp_path / "checkpoints.jsonl")]
    assert await asyncio.to_thread(main, command) == 0  # the command runs its own event loop
    assert "3 checkpoints written" in capsys.readouterr().out
    return {"export": out.getvalue().splitlines(), "log_vkey": log_vkey, "witness_vkey": witness_vkey,
            "checkpoints": (tmp_path / "checkpoints.jsonl").read_text(encoding="utf-8").splitlines()}


def run(material: dict[str, Any], quorum: int = 1, **changes: Any) -> int:
    m = {**material, **changes}
    return VERIFY(m["export"], m["checkpoints"], m["log_vkey"], [m["witness_vkey"]], quorum)


async def test_the_reference_accepts_the_witnessed_export(material: dict[str, Any]) -> None:
    assert [json.loads(line)["tree_size"] for line in material["checkpoints"][1:]] == [10, 20, 30]
    assert run(material) == 30
    with pytest.raises(ValueError, match="checkpoint 10: 1 of 2 cosignatures"):
        run(material, quorum=2)


async def test_the_reference_refuses_tampering(material: dict[str, Any]) -> None:
    export, checkpoints = material["export"], material["checkpoints"]
    # an export cut after 25 entries (its later lines gone)
    cut = [line for line in export if json.loads(line).get("index", 0) < 25 and '"tree_head"' not in line]
    with pytest.raises(ValueError, match="checkpoint 30: the export stops at 25 entries"):
        run(material, export=cut)
    # an entry's leaf hash replaced (as a consistent rewrite would)
    forged = list(export)
    at = next(i for i, line in enumerate(forged) if '"index":15,"leaf_hash"' in line)
    d = json.loads(forged[at])
    d["leaf_hash"] = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
    forged[at] = json.dumps(d)
    with pytest.raises(ValueError, match="checkpoint 20: the export's first 20 entries are not the ones"):
        run(material, export=forged)
    # a cosignature altered
    line = json.loads(checkpoints[2])
    text, _, block = line["note"].rpartition("\n\n")
    log_line, cosignature = block.rstrip("\n").split("\n")
    name, blob = cosignature.removeprefix("\u2014 ").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    line["note"] = f"{text}\n\n{log_line}\n\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(InvalidSignature):
        run(material, checkpoints=[*checkpoints[:2], json.dumps(line), *checkpoints[3:]])
    # the cosignature line removed: below the quorum
    line["note"] = f"{text}\n\n{log_line}\n"
    with pytest.raises(ValueError, match="checkpoint 20: 0 of 1 cosignatures"):
        run(material, checkpoints=[*checkpoints[:2], json.dumps(line), *checkpoints[3:]])
    # checkpoints checked against another key of the same name than the log's
    origin = material["log_vkey"].split("+")[0]
    other = cp.verifier_key(origin, Ed25519PrivateKey.generate()).encode()
    with pytest.raises(ValueError, match="checkpoint 10: not signed by the log's key"):
        run(material, log_vkey=other)
