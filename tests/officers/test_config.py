"""The officer role in ``clients.toml``: validated at start-up, naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.settings import ConfigError, load
from tests.config_support import config_with, line_named
from tests.officers.conftest import OFFICER

ROOT = Path(__file__).resolve().parents[2]
OFFICER_TABLE = '[clients."dgssi.officer"]\nname = "DGSSI — security officer"\nrole = "officer"\n'


def test_the_bundled_officer_and_the_default_role() -> None:
    settings = load(env={})
    officer = settings.clients[OFFICER]
    assert (officer.role, officer.rights, officer.dev_key) == ("officer", (), True)
    assert officer.name == "DGSSI — security officer"
    assert {c.role for cid, c in settings.clients.items() if cid != OFFICER} == {"data"}, "data is the default"


def test_an_officer_with_data_rights_is_refused_naming_the_line(tmp_path: Path) -> None:
    config = config_with(tmp_path, OFFICER_TABLE, OFFICER_TABLE + 'rights = [\n  { purpose = "asd.eligibility", '
                         'checks = ["identity"] },\n]\n')
    with pytest.raises(ConfigError, match="an officer may hold no data rights") as info:
        load(config, env={})
    assert line_named(info.value, config / "clients.toml").startswith("rights = [")


def test_an_officer_managing_consents_is_refused(tmp_path: Path) -> None:
    config = config_with(tmp_path, OFFICER_TABLE, OFFICER_TABLE + 'rights = [{ purpose = "partner.social-housing", '
                         'checks = [], manage_consents = true }]\n')
    with pytest.raises(ConfigError, match="an officer may hold no data rights"):
        load(config, env={})


def test_an_officer_with_an_empty_rights_list_is_fine(tmp_path: Path) -> None:
    config = config_with(tmp_path, OFFICER_TABLE, OFFICER_TABLE + "rights = []\n")
    assert load(config, env={}).clients[OFFICER].role == "officer"


@pytest.mark.parametrize("role", ['"auditor"', '"Officer"', "true"])
def test_an_unknown_role_is_refused(tmp_path: Path, role: str) -> None:
    config = config_with(tmp_path, 'role = "officer"', f"role = {role}")
    with pytest.raises(ConfigError, match="role") as info:
        load(config, env={})
    assert str(config / "clients.toml") in str(info.value)
    if role.startswith('"'):
        assert line_named(info.value, config / "clients.toml") == f"role = {role}"
