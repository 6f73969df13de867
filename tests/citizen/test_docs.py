"""docs/citizens.md says what the code does: its example answer, configuration and commands work as printed."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from gateway.cli.main import parser
from gateway.config.settings import load
from tests.gateway.test_openapi import SCHEMAS, assert_valid

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "citizens.md"


def block(language: str, section: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"```{language}\n(.*?)```", text[text.index(section):], re.S)
    assert match, f"no {language} block in {section!r}"
    return match.group(1)


def test_the_example_answer_follows_the_schema() -> None:
    example = json.loads(block("json", "## 2."))
    assert_valid((SCHEMAS / "citizen-access-log.json").as_uri(), example)
    assert {e["legal_basis"]["type"] for e in example["entries"]} == {"consent", "statute"}


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    gateway = config / "gateway.toml"
    text = gateway.read_text(encoding="utf-8")
    start = text.index("[citizens]")
    end = text.index("\n[", start + 1)
    gateway.write_text(text[:start] + block("toml", "## 5.") + text[end:], encoding="utf-8")
    citizens = load(config, env={}).citizens
    assert (citizens.issuer, citizens.jwks_file) == ("https://idp.example.ma",
                                                     Path("/etc/anss-gateway/citizen-idp-jwks.json"))


def test_the_token_contract_names_every_claim_checked() -> None:
    contract = DOC.read_text(encoding="utf-8").split("## 2.")[0]
    for claim in ("alg", "kid", "crit", "iss", "aud", "sub", "iat", "exp", "nbf", "idcs_claim", "cin_claim",
                  "citizen_token_invalid", "WWW-Authenticate"):
        assert f"`{claim}`" in contract or claim in contract, claim


def test_the_development_commands_parse() -> None:
    commands = [line for line in block("sh", "## 6.").splitlines() if "anss-gateway" in line]
    assert len(commands) == 2
    for line in commands:
        words = shlex.split(line.split("$(", 1)[-1].rstrip(")"))
        args = parser().parse_args(words[1:])
        assert args.func.__name__ in {"cmd_client_verify", "cmd_citizen_token"}
