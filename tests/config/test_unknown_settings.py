"""A misspelt setting stops the start with one line naming the file, the line and the setting (README,
"Configuration"): before, it was ignored and its default applied without a word."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config.settings import load
from gateway.config.toml import ConfigError
from tests.config_support import ROOT, config_with, line_named

CASES = [  # (file, old, new, the table named)
    ("gateway.toml", "max_body_bytes = 65536", "max_body_byte = 65536", "[gateway]"),
    ("gateway.toml", "window_hours = 24", "window_hour = 24", "[audit.anomalies]"),
    ("gateway.toml", "session_idle_minutes = 30", "session_idle_minute = 30", "[console]"),
    ("gateway.toml", "[gateway]", "[gatway]", "the top level"),
    ("clients.toml", '"\ndev_key = true', '"\ndev_keys = true', '[clients."anss.asd"]'),
    ("purposes.toml", 'title_fr = "Aide sociale directe — éligibilité',
     'titel_fr = "Aide sociale directe — éligibilité', '[purposes."asd.eligibility"]'),
]


@pytest.mark.parametrize(("file", "old", "new", "table"), CASES)
def test_a_misspelt_setting_names_its_file_line_and_table(tmp_path: Path, file: str, old: str, new: str,
                                                           table: str) -> None:
    config = config_with(tmp_path, old, new, file)
    with pytest.raises(ConfigError) as caught:
        load(config)
    message = str(caught.value)
    setting = re.split(r"[ =\]]", new.strip('["\n'))[0]
    assert "\n" not in message and f"{table}: unknown setting `{setting}`" in message
    assert line_named(caught.value, config / file).startswith(new.strip('"\n').split(" ")[0]), message


def test_a_misspelt_setting_in_an_inline_table_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "config" / "clients.toml").read_text(encoding="utf-8")
    [first_right] = re.findall(r'\{ ?purpose = "asd.eligibility"[^}]*\}', text)[:1] or [None]
    assert first_right is not None
    config = config_with(tmp_path, first_right, first_right.replace("purpose =", "purpse ="), "clients.toml")
    with pytest.raises(ConfigError, match=r"unknown setting `purpse`; allowed: checks, deny, manage_consents, purpose"):
        load(config)


@pytest.mark.parametrize("config", ["config", "deploy/base/config"])
def test_every_setting_the_shipped_files_show_is_known(tmp_path: Path, config: str) -> None:
    """The shipped files, with every commented example setting uncommented, load: the list of known settings
    (gateway/config/known.py) holds every setting the documentation shows."""
    from gateway.config.known import GATEWAY, refuse_unknown
    from gateway.config.toml import read_table

    for path in [ROOT / config / "gateway.toml", ROOT / "deploy" / "overlays" / "production" / "gateway.toml"]:
        example = re.compile(r"^# ?((?:\[\[?[a-z_.]+\]\]?)|(?:[a-z_0-9]+ = .*))$", re.M)
        uncommented = example.sub(r"\1", path.read_text(encoding="utf-8"))
        out = tmp_path / path.name
        out.write_text(uncommented, encoding="utf-8")
        refuse_unknown(out, read_table(out), GATEWAY)
    assert load(ROOT / config).gateway_id


@pytest.mark.parametrize(("name", "kind"), [("ANSS_GATEWAY_PORT", "an integer"),
                                            ("ANSS_GATEWAY_SIMULATOR_BASE_PORT", "an integer"),
                                            ("ANSS_GATEWAY_SIGNING_KEY_OVERLAP_S", "a number")])
def test_a_number_from_the_environment_that_is_none_is_one_line(name: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=f"^environment {name} must be {kind}, not 'abc'$"):
        load(ROOT / "config", {name: "abc"})
    assert load(ROOT / "config", {"ANSS_GATEWAY_PORT": "0"}).port == 0, "0 is a port: any free one"


def test_a_negative_key_overlap_is_refused_and_config_wins_over_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`signing_key_overlap_s` .* must be 0 or more"):
        load(ROOT / "config", {"ANSS_GATEWAY_SIGNING_KEY_OVERLAP_S": "-5"})
    other = config_with(tmp_path, 'id = "anss-gateway"', 'id = "anss-gateway-b"', "gateway.toml")
    # an explicit --config (the argument) is what the operator asked for, whatever the environment says
    assert load(other, {"ANSS_GATEWAY_CONFIG": str(ROOT / "config")}).gateway_id == "anss-gateway-b"
    assert load(None, {"ANSS_GATEWAY_CONFIG": str(other)}).gateway_id == "anss-gateway-b"
