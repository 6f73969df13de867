"""Consent rights in ``clients.toml`` are validated at start-up, naming the file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.config.settings import ConfigError, load
from tests.config_support import config_with

ROOT = Path(__file__).resolve().parents[2]
ASD_RIGHT = '{ purpose = "asd.eligibility", checks = ["identity", "household", "schooling", "health_coverage", ' \
            '"employment", "social_registry", "asd_entitlement"] }'


def test_the_bundled_consent_client_and_purpose() -> None:
    settings = load(env={})
    assert settings.purposes["partner.social-housing"].legal_basis == "consent"
    rights = settings.clients["mhpv.housing"].rights
    assert [(r.purpose, r.manage_consents) for r in rights] == [("partner.social-housing", True)]
    assert not any(r.manage_consents for r in settings.clients["anss.asd"].rights)


def test_managing_consents_of_a_statute_purpose_is_refused(tmp_path: Path) -> None:
    config = config_with(tmp_path, ASD_RIGHT, ASD_RIGHT[:-2] + ", manage_consents = true }")
    with pytest.raises(ConfigError, match="needs a consent-based purpose") as info:
        load(config, env={})
    path = config / "clients.toml"
    line = int(str(info.value).split(f"{path}:")[1].split(" ")[0])
    assert "manage_consents" in path.read_text(encoding="utf-8").splitlines()[line - 1]


def test_manage_consents_is_true_or_false(tmp_path: Path) -> None:
    old = '"employment"], manage_consents = true'
    config = config_with(tmp_path, old, '"employment"], manage_consents = "yes"')
    with pytest.raises(ConfigError, match="`manage_consents` must be true or false"):
        load(config, env={})


def test_a_right_may_only_manage_consents(tmp_path: Path) -> None:
    old = 'checks = ["identity", "household", "employment"], manage_consents = true'
    config = config_with(tmp_path, old, "checks = [], manage_consents = true")
    right = load(config, env={}).clients["mhpv.housing"].rights[0]
    assert (right.checks, right.manage_consents) == (frozenset(), True)


def test_the_registry_file_is_under_the_state_directory_unless_configured(tmp_path: Path) -> None:
    assert load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path)}).consent_store_path == tmp_path / "consents.sqlite3"
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    with (config / "gateway.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[consents]\ndatabase = "registry/consents.db"\n')
    settings = load(config, env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path)})
    assert settings.consent_store_path == tmp_path / "registry" / "consents.db"
