"""The witness's TOML configuration, its key file and the ``anss-gateway witness`` commands."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.audit import checkpoint as cp
from gateway.audit.witness.config import load_config, load_witness_key, witness_verifier_key
from gateway.audit.witness.protocol import parse_cosignatures
from gateway.cli.main import main
from gateway.config.toml import ConfigError
from tests.audit.witness.support import LOG_VKEY, ORIGIN, MemoryLog, write_config


def test_a_configuration_loads_with_paths_resolved(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert (config.name, config.host, config.port) == ("cndp.ma/witness", "127.0.0.1", 0)
    assert config.state_dir == tmp_path.resolve() / "state"
    assert config.key_file == config.state_dir / "witness-key.pem"
    log = config.log(ORIGIN)
    assert log is not None and log.vkeys == (LOG_VKEY,)
    assert config.log("other") is None


@pytest.mark.parametrize(("replace", "by", "message"), [
    ('name = "cndp.ma/witness"', 'name = "two words"', "witness.toml:1: `name` key name"),
    ('listen = "127.0.0.1:0"', 'listen = "nowhere"', "witness.toml:2: `listen` must be host:port"),
    ('state_dir = "state"', 'state_dir = "state"\nport = 1', "unknown setting(s) port"),
    ("+4f372b3b+", "+00000000+", "witness.toml:7: verifier key of 'anss.gov.ma/access-log': verifier key id"),
    ('vkeys = [', 'vkey = "x"\nvkeys = [', "unknown setting(s) vkey for log"),
])
def test_mistakes_name_file_line_and_setting(tmp_path: Path, replace: str, by: str, message: str) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(replace, by), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_a_cosignature_key_is_not_a_log_key(tmp_path: Path) -> None:
    witness_key = cp.verifier_key("w", load_witness_key(tmp_path / "k.pem"), cp.COSIGNATURE_V1)
    with pytest.raises(ConfigError, match=r"must be Ed25519 \(type 0x01\)"):
        load_config(write_config(tmp_path, vkeys=(witness_key.encode(),)))


def test_the_key_is_created_once(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    first = witness_verifier_key(config, load_witness_key(config.key_file))
    assert config.key_file.stat().st_mode & 0o777 == 0o600
    assert witness_verifier_key(config, load_witness_key(config.key_file)) == first
    assert first.key_type == cp.COSIGNATURE_V1
    with pytest.raises(ConfigError, match="does not exist"):
        load_witness_key(tmp_path / "absent.pem", create=False)


def test_witness_key_command_prints_the_verifier_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    assert main(["witness", "key", "--config", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    vkey = cp.parse_verifier_key(printed)
    config = load_config(path)
    assert vkey == witness_verifier_key(config, load_witness_key(config.key_file))
    assert vkey.name == "cndp.ma/witness"
    assert main(["witness", "key", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: file not found" in capsys.readouterr().err


async def test_witness_serve_command_runs_until_terminated(tmp_path: Path) -> None:
    """``anss-gateway witness serve`` in its own process: it logs where it listens, cosigns, stops on SIGTERM."""
    path = write_config(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "witness", "serve", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stderr is not None
        url = None
        while url is None:
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            assert line, "the witness exited before listening"
            event = json.loads(line)
            if event.get("event") == "witness_listening":
                url = event["url"]
                assert event["logs"] == [ORIGIN]
        log = MemoryLog(3)
        async with aiohttp.ClientSession() as session, session.post(url + "/add-checkpoint",
                                                                    data=log.request(0)) as response:
            assert response.status == 200
            answer = await response.read()
        vkey = cp.parse_verifier_key(event["vkey"])
        assert cp.verify_cosignatures(cp.add_signatures(log.note(), parse_cosignatures(answer)), [vkey])
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_gateway_reads_its_witnesses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config.settings import load
    from tests.config_support import config_with

    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    vkey = cp.verifier_key("cndp.ma/witness", load_witness_key(tmp_path / "w.pem"), cp.COSIGNATURE_V1).encode()
    witnesses = (f'checkpoint_key_file = "keys/checkpoint.pem"\nwitness_quorum = 1\n'
                 f'[[audit.witnesses]]\nurl = "https://witness.cndp.ma"\nvkey = "{vkey}"\n')
    config = config_with(tmp_path, "export_max_bytes = 67108864\n", f"export_max_bytes = 67108864\n{witnesses}",
                         "gateway.toml")
    settings = load(config)
    w = settings.witnessing
    assert [(x.url, x.vkey.encode()) for x in w.witnesses] == [("https://witness.cndp.ma", vkey)]
    assert w.quorum == 1 and w.origin is None
    assert w.key_path(settings.state_dir) == config / "keys" / "checkpoint.pem"
    assert w.high_water_path(settings.state_dir) == config / "keys" / "checkpoint.high-water"
    path = config / "gateway.toml"
    for old, new, message in (("witness_quorum = 1", "witness_quorum = 2", "`witness_quorum` must be between"),
                              (vkey, LOG_VKEY.encode(), "`vkey` must be a witness cosignature key"),
                              ('"https://witness.cndp.ma"', '"witness.cndp.ma"', "`url` must be http(s)"),
                              # the origin is the checkpoints' key name too: a name it could never sign under
                              ("witness_quorum = 1\n[[", 'witness_quorum = 1\ncheckpoint_origin = "anss gov/log"\n[[',
                               "`checkpoint_origin` names the checkpoints' signing key: no spaces or '+'"),
                              ("witness_quorum = 1\n[[", 'witness_quorum = 1\ncheckpoint_origin = "anss+gov/log"\n[[',
                               "`checkpoint_origin` names the checkpoints' signing key: no spaces or '+'")):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(old, new), encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load(config)
        path.write_text(text, encoding="utf-8")
