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
from gateway.crypto import keys
from tests.audit.store_support import KEY, LOG_ID
from tests.audit.test_merkle import doc_verifier as section_7_verifier
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
            "log_key": guard.key,
            "checkpoints": (tmp_path / "checkpoints.jsonl").read_text(encoding="utf-8").splitlines()}


def run(material: dict[str, Any], quorum: int = 1, with_file: bool = False, **changes: Any) -> int:
    m = {**material, **changes}
    return VERIFY(m["export"], m["log_vkey"], [m["witness_vkey"]], quorum, m["checkpoints"] if with_file else ())


def head_at(export: list[str], size: int) -> int:
    return next(i for i, line in enumerate(export) if f'"type":"tree_head","tree_size":{size},' in line)


def with_note(export: list[str], size: int, note: str | None, on: int | None = None) -> list[str]:
    """The export with the checkpoint of the head of ``size`` replaced by ``note`` (removed if None), or moved
    to the head of size ``on``."""
    out = list(export)
    d = json.loads(out[head_at(out, size)])
    d.pop("checkpoint")
    out[head_at(out, size)] = json.dumps(d, separators=(",", ":"))
    if note is not None:
        target = head_at(out, size if on is None else on)
        moved = json.loads(out[target])
        moved["checkpoint"] = note
        out[target] = json.dumps(moved, separators=(",", ":"))
    return out


def altered_cosignature(note: str, remove: bool = False) -> str:
    text, _, block = note.rpartition("\n\n")
    log_line, cosignature = block.rstrip("\n").split("\n")
    if remove:
        return f"{text}\n\n{log_line}\n"
    name, blob = cosignature.removeprefix("\u2014 ").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    return f"{text}\n\n{log_line}\n\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"


async def test_the_reference_accepts_the_witnessed_export_alone(material: dict[str, Any]) -> None:
    export = material["export"]
    heads = [json.loads(line) for line in export if '"type":"tree_head"' in line]
    assert [(h["tree_size"], "checkpoint" in h) for h in heads] == [(10, True), (20, True), (30, True)]
    assert [json.loads(line)["tree_size"] for line in material["checkpoints"][1:]] == [10, 20, 30]
    assert [json.loads(line)["note"] for line in material["checkpoints"][1:]] == [h["checkpoint"] for h in heads]
    assert run(material) == 30
    assert run(material, with_file=True) == 30  # the archive file agrees with the export
    assert run(material, quorum=2) == 0  # every checkpoint checked, none cosigned by two of the witnesses trusted
    size, _ = section_7_verifier()(export, keys.jwks([KEY]))  # heads with checkpoints, verified as printed
    assert size == 30


async def test_the_reference_refuses_tampering(material: dict[str, Any]) -> None:
    export = material["export"]
    # an export cut after 25 entries (its later lines gone, its heads with them): the archive the auditor holds
    cut = [line for line in export if json.loads(line).get("index", 0) < 25 and '"tree_head"' not in line]
    assert run(material, export=cut) == 0  # alone, a cut export that dropped its heads shows nothing witnessed
    with pytest.raises(ValueError, match="checkpoint 30: the export stops at 25 entries"):
        run(material, with_file=True, export=cut)
    # an entry's leaf hash replaced (as a consistent rewrite would)
    forged = list(export)
    at = next(i for i, line in enumerate(forged) if '"index":15,"leaf_hash"' in line)
    d = json.loads(forged[at])
    d["leaf_hash"] = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
    forged[at] = json.dumps(d)
    with pytest.raises(ValueError, match="checkpoint 20: the export's first 20 entries are not the ones"):
        run(material, export=forged)
    # a cosignature altered on a head's line
    note = json.loads(export[head_at(export, 20)])["checkpoint"]
    with pytest.raises(InvalidSignature):
        run(material, export=with_note(export, 20, altered_cosignature(note)))
    # the last checkpoint's cosignature line removed: checked, but no longer witnessed
    last = json.loads(export[head_at(export, 30)])["checkpoint"]
    assert run(material, export=with_note(export, 30, altered_cosignature(last, remove=True))) == 20
    # a checkpoint moved onto another head
    with pytest.raises(ValueError, match="checkpoint 10: on the tree head of size 20"):
        run(material, export=with_note(with_note(export, 20, None), 10, json.loads(export[head_at(export, 10)])
                                        ["checkpoint"], on=20))
    # the archive holding another root for a size the export's checkpoints state: a fork
    other = cp.sign_checkpoint(cp.Checkpoint(material["log_vkey"].split("+")[0], 10, bytes(32)),
                               material["log_vkey"].split("+")[0], material["log_key"])
    file = [*material["checkpoints"], json.dumps({"type": "checkpoint", "tree_size": 10, "note": other})]
    with pytest.raises(ValueError, match="checkpoint 10: two roots for one size"):
        run(material, with_file=True, checkpoints=file)
    # checkpoints checked against another key of the same name than the log's
    origin = material["log_vkey"].split("+")[0]
    other_key = cp.verifier_key(origin, Ed25519PrivateKey.generate()).encode()
    with pytest.raises(ValueError, match="checkpoint 10: not signed by the log's key"):
        run(material, log_vkey=other_key)
