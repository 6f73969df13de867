"""The `anss-gateway` command as an operator runs it: real processes, real ports, real files."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.settings import ConfigError, load
from simulators.servers import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports after it."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size >= 65000:
            continue
        try:
            holders = []
            for port in range(base, base + size):
                h = socket.socket()
                h.bind(("127.0.0.1", port))
                holders.append(h)
            for h in holders:
                h.close()
            return base
        except OSError:
            for h in holders:
                h.close()
    raise RuntimeError("no free port block")


def test_serve_with_simulators_becomes_ready_logs_json_and_stops_gracefully(tmp_path: Path) -> None:
    sims = len(DEFAULT_PORTS)  # the simulators take base, base + 1, ...; the gateway the port after them
    base = free_port_block(sims + 1)
    gateway_port = base + sims
    env = {**os.environ, "ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state"), "ANSS_GATEWAY_PORT": str(gateway_port),
           "ANSS_GATEWAY_SIMULATOR_BASE_PORT": str(base)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "serve", "--with-simulators"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and ready is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/readyz", timeout=1) as resp:
                    ready = json.loads(resp.read())
            except OSError:
                time.sleep(0.2)
        assert ready is not None
        roomy = ready["checks"].pop("free_space")  # (a disk below the floor says degraded, still serving)
        assert (ready["status"], ready["checks"]) == (
            "ready" if roomy else "degraded", {"keys": True, "store": True, "connectors": True})
        assert {name: s["state"] for name, s in ready["sources"].items()} == {
            "civil_registry": "closed", "education": "closed", "employment": "closed", "health": "closed",
            "social_registry": "closed"}
        assert ready["unparsable_requests"] == 0  # nothing malformed was sent
        # the CLI client signs with the dev key the server generated, and checks the answer's signature
        fixture = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "client", "verify", "--idcs", _fixture_idcs(),
             "--check", "identity", "--url", f"http://127.0.0.1:{gateway_port}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert fixture.returncode == 0, fixture.stderr
        assert "response signature valid" in fixture.stderr
        assert json.loads(fixture.stdout)["checks"]["identity"]["status"] == "verified"
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests and all(len(r["request_id"]) == 32 for r in requests)
    key_material = (tmp_path / "state" / "keys" / "pseudonym.key").read_text().strip()
    assert key_material not in err.decode() and "PRIVATE KEY" not in err.decode()
    assert (tmp_path / "state" / "access-log.sqlite3").exists()


def _fixture_idcs() -> str:
    from simulators.population import Population

    settings = load(env={})
    return Population(settings.simulators.seed, settings.simulators.households).fixture("amo_tadamon").father.idcs


def test_demo_json_verifies_every_fixture(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["fixture"] for r in results] == ["deceased_father", "child_out_of_school", "salaried_parent",
                                               "amo_tadamon", "disabled_child", "not_in_rsu", "elderly_couple",
                                               "seven_children", "newborn", "above_threshold", "unknown_identifier"]
    for r in results:
        assert r["ok"] and r["signature_valid"], r
        assert set(r) >= {"subject", "checks", "sources"}
    everyone = {"civil_registry", "education", "health", "employment", "social_registry"}
    for r in results[:-1]:
        assert r["sources"] and {s["status"] for s in r["sources"]} == {"ok"}
        # the elderly couple's son is 31, the newborn's sister 2: nobody of school age, so MASSAR is not asked
        expected = everyone - {"education"} if r["fixture"] in ("elderly_couple", "newborn") else everyone
        assert {s["name"] for s in r["sources"]} == expected
    assert results[-1]["status"] == 404


def test_keys_generate_and_jwks(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "signing.pem"
    assert main(["keys", "generate", "--alg", "ES256", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert main(["keys", "generate", "--out", str(out)]) == 2, "never overwrite a key"
    capsys.readouterr()
    monkeypatch.setenv("ANSS_GATEWAY_SIGNING_KEY_FILE", str(out))
    assert main(["keys", "jwks"]) == 0
    jwks = json.loads(capsys.readouterr().out)
    assert jwks["keys"][0]["alg"] == "ES256" and jwks["keys"][0]["crv"] == "P-256"
    assert "d" not in jwks["keys"][0], "never publish the private part"


def _config_copy(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    return target


TADAMON_RIGHT = 'checks = ["identity", "health_coverage", "social_registry"]'


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("clients.toml", TADAMON_RIGHT, 'checks = ["identity", "credit"]', "unknown check"),
        ("clients.toml", TADAMON_RIGHT, 'checks = ["identity", "schooling"]', "not allowed by purpose"),
        ("clients.toml", TADAMON_RIGHT, TADAMON_RIGHT + ', deny = ["identity.salary"]', "unknown fact 'salary'"),
        ("clients.toml", TADAMON_RIGHT, TADAMON_RIGHT + ', deny = ["household.birth_date:adults"]', "does not grant"),
        ("clients.toml", 'purpose = "amo.tadamon.eligibility"', 'purpose = "marketing"', "unknown purpose"),
        ("purposes.toml", '"identity", "household", "health_coverage", "social_registry"]', '"identity", "horoscope"]',
         "unknown check"),
        ("gateway.toml", "port = 8080", 'port = "eighty"', "`port` must be an integer"),
    ],
)
def test_config_errors_name_file_and_setting(tmp_path: Path, file: str, old: str, new: str, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_copy(tmp_path)
    path = config / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load(config, env={})
    assert str(path) in str(info.value) and message in str(info.value)
    if file != "gateway.toml":  # rights and purposes errors also name the line
        line = int(str(info.value).split(f"{path}:")[1].split(" ")[0])
        assert new in path.read_text().splitlines()[line - 1], "the named line holds the mistake"
    assert main(["--config", str(config), "fixtures"]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_environment_overrides(tmp_path: Path) -> None:
    settings = load(env={"ANSS_GATEWAY_PORT": "9999", "ANSS_GATEWAY_HOST": "0.0.0.0",
                         "ANSS_GATEWAY_STATE_DIR": str(tmp_path),
                         "ANSS_GATEWAY_CONNECTOR_EDUCATION_URL": "http://127.0.0.1:1234/"})
    assert (settings.port, settings.host, settings.state_dir) == (9999, "0.0.0.0", tmp_path)
    assert settings.connector("education").base_url == "http://127.0.0.1:1234"
    assert settings.audit_database == tmp_path / "access-log.sqlite3"


def test_client_verify_says_one_line_when_the_gateway_cannot_be_reached(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "client.pem"
    assert main(["keys", "generate", "--out", str(key)]) == 0
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    capsys.readouterr()
    code = main(["client", "verify", "--key", str(key), "--url", f"http://127.0.0.1:{port}",
                 "--idcs", "1234567890", "--purpose", "asd.eligibility", "--client", "anss.asd"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "cannot reach the gateway" in err and str(port) in err, err
    assert "Traceback" not in err


def test_a_connector_url_from_the_environment_wins_over_its_simulator() -> None:
    from gateway.web.runner import simulated_urls

    sims = {"civil_registry": "http://127.0.0.1:1", "cnss": "http://127.0.0.1:2", "amo": "http://127.0.0.1:3"}
    env = {"ANSS_GATEWAY_CONNECTOR_CNSS_URL": "https://cnss.example.ma", "ANSS_GATEWAY_CONNECTOR_AMO_URL": ""}
    assert simulated_urls(sims, env) == {"civil_registry": "http://127.0.0.1:1", "amo": "http://127.0.0.1:3"}


def test_plain_serve_follows_a_simulator_base_port_except_where_a_url_is_given() -> None:
    from gateway.web.runner import following_base_port

    env = {"ANSS_GATEWAY_SIMULATOR_BASE_PORT": "9101", "ANSS_GATEWAY_CONNECTOR_HEALTH_URL": "https://amo.example.ma"}
    settings = load(env=env)
    moved = following_base_port(settings, env)
    assert moved == {"civil_registry": "http://127.0.0.1:9101", "education": "http://127.0.0.1:9102",
                     "employment": "http://127.0.0.1:9104", "social_registry": "http://127.0.0.1:9105"}
    assert settings.connector("health").base_url == "https://amo.example.ma"  # its own URL: kept
    assert following_base_port(load(env={}), {}) == {}  # the default base port: nothing to follow


def _unwritable_state_dir(tmp_path: Path) -> tuple[Path, str]:
    """A state directory the gateway cannot write in, and what the one-line error says about it.

    As a normal user: a directory with mode 0500. As root (CI containers often are), permissions do not stop
    a write, so a chmod test would prove nothing: then a path under a regular file, which nobody can create."""
    if os.geteuid() != 0:
        state = tmp_path / "read-only"
        state.mkdir()
        state.chmod(0o500)
        return state, "is not writable: Permission denied"
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory\n")
    return blocker / "state", "is missing and cannot be created: Not a directory"


@pytest.mark.parametrize("command", [["serve"], ["keys", "rotate"], ["keys", "jwks"], ["fixtures"],
                                     ["citizen", "token", "--idcs", "1234567890"], ["demo"], ["simulate"],
                                     ["consent", "list", "--idcs", "1234567890"]],
                         ids=lambda c: "-".join(c[:2]))
def test_an_unwritable_state_dir_is_one_line_naming_it_and_its_setting(
        tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    state, reason = _unwritable_state_dir(tmp_path)
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(state))
    try:
        assert main(command) == 2
    finally:
        if state.exists():
            state.chmod(0o700)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(state) in err and "ANSS_GATEWAY_STATE_DIR" in err and "[gateway] state_dir" in err
    assert reason in err


def test_a_state_dir_that_is_a_file_or_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "state"
    a_file.write_text("")
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(a_file))
    assert main(["keys", "jwks"]) == 2
    err = capsys.readouterr().err
    assert err == f"configuration error: the state directory {a_file} ([gateway] state_dir in gateway.toml, or " \
                  "ANSS_GATEWAY_STATE_DIR) is not a directory\n"
    missing = tmp_path / "new" / "state"  # missing but creatable: made, as on a first start
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(missing))
    assert main(["keys", "jwks"]) == 0 and missing.is_dir()


def test_keys_generate_never_overwrites_a_public_key_and_says_when_it_cannot_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "k.pem"
    taken.with_suffix(".pub.pem").write_text("someone's public key")
    assert main(["keys", "generate", "--out", str(taken)]) == 2
    assert not taken.exists() and taken.with_suffix(".pub.pem").read_text() == "someone's public key"
    capsys.readouterr()
    assert main(["keys", "generate", "--out", str(tmp_path / "missing" / "k.pem")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cannot write the key to") and "Traceback" not in err


def test_keys_jwks_all_holds_every_key_that_signed_heads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """After rotations past the overlap, the published JWKS no longer holds the keys of old heads; --all does."""
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ANSS_GATEWAY_SIGNING_KEY_OVERLAP_S", "0")
    assert main(["keys", "jwks"]) == 0  # creates the first key
    first = json.loads(capsys.readouterr().out)["keys"][0]["kid"]
    for _ in range(2):
        assert main(["keys", "rotate"]) == 0
    capsys.readouterr()
    assert main(["keys", "jwks"]) == 0
    published = {k["kid"] for k in json.loads(capsys.readouterr().out)["keys"]}
    assert first not in published
    assert main(["keys", "jwks", "--all"]) == 0
    every = json.loads(capsys.readouterr().out)["keys"]
    assert first in {k["kid"] for k in every} and len(every) == 3
    assert all("d" not in k and k["use"] == "sig" for k in every)


def test_key_mistakes_are_one_line_never_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    key = tmp_path / "k.pem"
    assert main(["keys", "generate", "--out", str(key)]) == 0
    capsys.readouterr()
    public = key.with_suffix(".pub.pem")
    assert main(["client", "verify", "--key", str(public), "--idcs", "1234567890"]) == 2  # a public key given
    err = capsys.readouterr().err
    assert err.startswith("key error: ") and str(public) in err and "Traceback" not in err
    monkeypatch.setenv("ANSS_GATEWAY_SIGNING_KEY_FILE", str(tmp_path / "gone.pem"))
    assert main(["keys", "jwks"]) == 2
    assert capsys.readouterr().err.strip() == f"file not found: {tmp_path / 'gone.pem'}"
    monkeypatch.delenv("ANSS_GATEWAY_SIGNING_KEY_FILE")
    monkeypatch.setenv("ANSS_GATEWAY_PSEUDONYM_KEY", "zz-not-hex")
    from gateway.audit.pseudonym import Pseudonymiser
    from gateway.config.toml import ConfigError

    with pytest.raises(ConfigError, match=r"^\$ANSS_GATEWAY_PSEUDONYM_KEY: the pseudonym key must be hexadecimal"):
        Pseudonymiser.load(None, tmp_path)



class _ClosedPipe(io.StringIO):
    """stdout whose reader has gone away (``… | head -1`` once head has its line)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no descriptor here")


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``anss-gateway … | head -1``: the pipe closes under the command; it stops quietly with 141 (a shell's
    SIGPIPE status), never a BrokenPipeError traceback."""
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["fixtures"]) == 141


def test_mistakes_of_the_machine_are_one_line_never_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A file given for the configuration directory, an output path that is a directory, a prompt with no
    terminal: one line on stderr and exit 2 (a traceback used to end each)."""
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    a_file = tmp_path / "afile"
    a_file.write_text("x", encoding="utf-8")
    assert main(["--config", str(a_file), "keys", "jwks"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err

    import asyncio

    from gateway.config.settings import load as load_settings
    from gateway.stores import backends as storage

    async def create_log() -> None:
        store = storage.access_log(load_settings(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state")}))
        await store.open()
        await store.close()

    asyncio.run(create_log())
    assert main(["audit", "export", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not list(tmp_path.glob(".*.partial")), "nothing left behind"

    import getpass

    def no_terminal(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", no_terminal)
    assert main(["officer", "password"]) == 2
    err = capsys.readouterr().err
    assert "no input" in err and "Traceback" not in err, err
