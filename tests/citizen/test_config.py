"""``[citizens]`` in gateway.toml (errors at file:line), display names and titles by language, and the dev
identity provider behind ``anss-gateway citizen token``."""

from __future__ import annotations

import re
from pathlib import Path

import jwt
import pytest

from gateway.citizen import devidp
from gateway.citizen.jwks import JwksFile
from gateway.citizen.token import CitizenTokenInvalid, CitizenTokenVerifier
from gateway.cli.main import main
from gateway.config.settings import ConfigError, load
from tests.config_support import config_with as edited_config
from tests.config_support import line_named

ROOT = Path(__file__).resolve().parents[2]
IDCS = "1234567890"


def config_with(tmp_path: Path, old: str, new: str, file: str = "gateway.toml") -> Path:
    return edited_config(tmp_path, old, new, file)


def test_the_bundled_settings() -> None:
    settings = load(env={})
    citizens = settings.citizens
    assert citizens.jwks_file is None, "development: the dev identity provider"
    assert citizens.algorithms == ("EdDSA", "ES256", "RS256")
    assert (citizens.idcs_claim, citizens.cin_claim, citizens.show_consent_evidence) == ("idcs", "cin", True)
    for client in settings.clients.values():  # the data clients citizens may read about (never officers)
        assert set(client.names) == ({"fr", "en"} if client.role == "data" else set()), client.id
    for purpose in settings.purposes.values():
        assert set(purpose.titles) == {"fr", "en"}, purpose.name


@pytest.mark.parametrize(("old", "new", "message", "on_line"), [
    ('algorithms = ["EdDSA", "ES256", "RS256"]', 'algorithms = ["EdDSA", "HS256"]', "refused: ['HS256']",
     "algorithms"),
    ('algorithms = ["EdDSA", "ES256", "RS256"]', 'algorithms = ["none"]', "asymmetric signatures only",
     "algorithms"),
    ('algorithms = ["EdDSA", "ES256", "RS256"]', "algorithms = []", "an empty list", "algorithms"),
    ("clock_leeway_s = 60", "clock_leeway_s = 3600", "between 0 and 300", "clock_leeway_s"),
    ("max_token_lifetime_s = 3600", "max_token_lifetime_s = 10", "between 60 and 86400", "max_token_lifetime_s"),
    ('idcs_claim = "idcs"', 'idcs_claim = "sub"', "registered claim 'sub'", "idcs_claim"),
    ('idcs_claim = "idcs"', 'idcs_claim = ""', "must name the claim", "idcs_claim"),
    ('cin_claim = "cin"', 'cin_claim = "idcs"', "must differ", "cin_claim"),
    ('issuer = "urn:anss:dev-identity-provider"', 'issuer = " "', "non-empty", "issuer"),
])
def test_mistakes_are_named_at_file_and_line(tmp_path: Path, old: str, new: str, message: str,
                                             on_line: str) -> None:
    config = config_with(tmp_path, old, new)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load(config, env={})
    assert "[citizens]" in str(info.value)
    assert on_line in line_named(info.value, config / "gateway.toml")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("show_consent_evidence = true", 'show_consent_evidence = "yes"', "must be true or false"),
    ('audience = "anss-gateway-citizens"', "audience = 7", "`audience` must be a string"),
])
def test_types_are_checked(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(config_with(tmp_path, old, new), env={})


def test_translations_must_be_text(tmp_path: Path) -> None:
    old = 'name_en = "Ministry of Housing — social housing programme"'
    with pytest.raises(ConfigError, match="`name_en` must be a string"):
        load(config_with(tmp_path, old, "name_en = 3", "clients.toml"), env={})


def test_a_jwks_file_is_relative_to_the_configuration(tmp_path: Path) -> None:
    config = config_with(tmp_path, '# jwks_file = "/etc/anss-gateway/citizen-idp-jwks.json"',
                         'jwks_file = "idp/jwks.json"')
    settings = load(config, env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "state")})
    assert settings.citizens.jwks_file == config / "idp" / "jwks.json"
    assert not devidp.uses_dev_provider(settings)
    assert "jwks_file" in line_named(ConfigError(settings.citizens.jwks_setting), config / "gateway.toml")


async def test_the_dev_token_command_mints_what_the_dev_jwks_verifies(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(state))
    assert main(["citizen", "token", "--idcs", IDCS, "--cin", "AB12345", "--lifetime", "120"]) == 0
    token = capsys.readouterr().out.strip()
    settings = load(env={"ANSS_GATEWAY_STATE_DIR": str(state)})
    assert devidp.uses_dev_provider(settings)
    key_file = devidp.dev_dir(state) / "signing.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    keys = JwksFile(devidp.jwks_path(settings), settings.citizens.algorithms)
    keys.load()
    citizen = await CitizenTokenVerifier(settings.citizens, keys).verify([f"Bearer {token}"])
    assert (citizen.idcs, citizen.cin) == (IDCS, "AB12345")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120 and claims["iss"] == settings.citizens.issuer
    assert IDCS not in claims["sub"]
    # a second token is signed by the same key, and a token of another state directory is not trusted
    assert main(["citizen", "token", "--idcs", IDCS]) == 0
    assert jwt.get_unverified_header(capsys.readouterr().out.strip())["kid"] == next(iter(await keys.keys()))
    other = devidp.mint(load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path / "other")}), IDCS)
    with pytest.raises(CitizenTokenInvalid, match="kid names no key"):
        await CitizenTokenVerifier(settings.citizens, keys).verify([f"Bearer {other}"])


def test_the_dev_token_command_is_refused_with_another_providers_keys(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_with(tmp_path, '# jwks_file = "/etc/anss-gateway/citizen-idp-jwks.json"',
                         'jwks_file = "/etc/anss-gateway/citizen-idp-jwks.json"')
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    assert main(["--config", str(config), "citizen", "token", "--idcs", IDCS]) == 2
    err = capsys.readouterr().err
    assert "another identity provider's keys" in err and "gateway.toml:" in err
    assert not (tmp_path / "state" / "citizen-idp").exists(), "no dev key is made for nothing"


@pytest.mark.parametrize("args", [["--idcs", "12345"], ["--idcs", IDCS, "--cin", "12"],
                                  ["--idcs", IDCS, "--lifetime", "100000"]])
def test_the_dev_token_command_checks_its_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    args: list[str]) -> None:
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path))
    try:
        code = main(["citizen", "token", *args])
    except SystemExit as exc:  # argparse refuses malformed identifiers
        code = int(str(exc.code))
    assert code == 2
