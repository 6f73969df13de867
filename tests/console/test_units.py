"""The console's parts on their own: password hashes, session cookies and login tokens, the two languages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.settings import ROOT, SCRYPT_HASH, ConfigError, load
from gateway.console import i18n
from gateway.console.passwords import dev_password, hash_password, verify_password
from gateway.console.sessions import SessionCodec, csrf_matches, load_session_key

KEY = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- passwords --------------------------------------------------------------------------------------------------------


def test_password_hashes_verify_and_are_salted() -> None:
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first != second and SCRYPT_HASH.fullmatch(first)
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterY", first)
    assert not verify_password("", first)


@pytest.mark.parametrize("stored", [None, "", "plain", "scrypt$3$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43])
def test_a_missing_or_malformed_hash_never_verifies(stored: str | None) -> None:
    assert not verify_password("anything", stored)


def test_the_cli_prints_a_hash_of_the_prompted_password(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["a long console password", "a long console password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["officer", "password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert SCRYPT_HASH.fullmatch(printed) and verify_password("a long console password", printed)


@pytest.mark.parametrize(("first", "second"), [("short", "short"), ("a long console password", "another one!!")])
def test_the_cli_refuses_short_or_mismatched_passwords(monkeypatch: pytest.MonkeyPatch, first: str,
                                                       second: str) -> None:
    answers = iter([first, second])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["officer", "password"]) == 2


def test_a_dev_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    password, path = dev_password(tmp_path, "anss.officer")
    assert len(password) >= 16 and path.stat().st_mode & 0o777 == 0o600
    assert dev_password(tmp_path, "anss.officer") == (password, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# --- sessions ---------------------------------------------------------------------------------------------------------


def codec(clock: Clock, key: bytes = KEY) -> SessionCodec:
    return SessionCodec(key, idle_s=1800, max_s=36000, clock=clock)


def test_a_session_cookie_round_trips_and_carries_no_secret() -> None:
    clock = Clock()
    c = codec(clock)
    session = c.open("anss.officer", "scrypt$hash")
    cookie = c.encode(session)
    assert c.decode(cookie) == session
    assert "scrypt$hash" not in cookie and repr(KEY) not in repr(c)
    assert csrf_matches(session, session.csrf) and not csrf_matches(session, "x") and not csrf_matches(session, None)
    assert session.password_tag == c.password_tag("scrypt$hash") != c.password_tag("scrypt$other")


def test_forged_or_foreign_cookies_are_refused() -> None:
    clock = Clock()
    c = codec(clock)
    cookie = c.encode(c.open("anss.officer", "h"))
    payload, mac = cookie.split(".")
    other_payload = codec(clock).encode(c.open("someone.else", "h")).split(".")[0]
    for forged in (f"{other_payload}.{mac}", f"{payload}.{mac[:-2]}AA", payload, "", f"{payload}.{mac}.x"):
        assert c.decode(forged) is None, forged
    assert codec(clock, bytes(32)).decode(cookie) is None  # another key
    login_cookie, _ = c.login_token()
    assert c.decode(login_cookie) is None  # a login token is not a session


@pytest.mark.parametrize("value", ["é.x", "\u00e9\u00e9.\u00e9", "a.\ud800", "\x00.\x00", "é", "=.=", "%.%"])
def test_a_malformed_cookie_is_no_session_and_no_login_token(value: str) -> None:
    c = codec(Clock())
    assert c.decode(value) is None
    assert not c.check_login_token(value, "x")
    payload, mac = c.encode(c.open("anss.officer", "h")).split(".")
    assert c.decode(f"{payload}é.{mac}") is None and c.decode(f"{payload}.{mac}é") is None


def test_sessions_end_when_idle_and_at_the_latest_after_the_maximum() -> None:
    clock = Clock()
    c = codec(clock)
    session = c.open("anss.officer", "h")
    clock.now += 1799
    assert c.decode(c.encode(session)) is not None
    clock.now += 2
    assert c.decode(c.encode(session)) is None  # idle 30 minutes
    clock.now = 1_000_000.0
    for _ in range(25):  # a page every 25 minutes keeps it alive ... up to the maximum
        clock.now += 1500
        renewed = c.decode(c.encode(session))
        if renewed is None:
            break
        session = c.renew(renewed)
    assert clock.now - 1_000_000.0 > 36000 - 1500 and c.decode(c.encode(session)) is None


def test_login_tokens_are_double_submitted_and_expire() -> None:
    clock = Clock()
    c = codec(clock)
    cookie, nonce = c.login_token()
    assert c.check_login_token(cookie, nonce)
    assert not c.check_login_token(cookie, "other") and not c.check_login_token(None, nonce)
    assert not c.check_login_token(c.encode(c.open("o", "h")), nonce)
    clock.now += 601
    assert not c.check_login_token(cookie, nonce)


def test_the_session_key_comes_from_the_environment_a_file_or_a_dev_key(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dev = load_session_key(None, tmp_path)
    assert len(dev) == 32 and load_session_key(None, tmp_path) == dev
    assert (tmp_path / "keys" / "console-session.key").stat().st_mode & 0o777 == 0o600
    configured = tmp_path / "configured.key"
    configured.write_text("ab" * 32)
    assert load_session_key(configured, tmp_path) == b"\xab" * 32
    monkeypatch.setenv("ANSS_GATEWAY_CONSOLE_SESSION_KEY", "cd" * 32)
    assert load_session_key(configured, tmp_path) == b"\xcd" * 32
    with pytest.raises(ValueError, match="32 bytes"):
        SessionCodec(b"short", idle_s=1, max_s=1)


# --- languages --------------------------------------------------------------------------------------------------------


def test_both_languages_say_everything_with_the_same_placeholders() -> None:
    fr, en = i18n.MESSAGES["fr"], i18n.MESSAGES["en"]
    assert fr.keys() == en.keys()
    for key in fr:
        assert set(re.findall(r"\{(\w+)\}", fr[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key
        assert fr[key] != en[key] or key in {"client", "source", "signature"}, key


@pytest.mark.parametrize(("header", "chosen"), [
    (None, None), ("", None), ("ar-MA", None), ("en-US,en;q=0.9", "en"), ("fr-MA,fr;q=0.9,en;q=0.8", "fr"),
    ("ar-MA,ar;q=0.9,en;q=0.5,fr;q=0.4", "en"), ("en;q=0.2, fr;q=0.8", "fr"), ("en;q=0, fr;q=oops", None),
    ("*", None),
])
def test_accept_language(header: str | None, chosen: str | None) -> None:
    assert i18n.from_accept_language(header) == chosen


def test_times_are_shown_in_local_time_with_their_offset() -> None:
    fr = i18n.Translator("fr", "Africa/Casablanca")
    en = i18n.Translator("en", "Africa/Casablanca")
    assert fr.when("2026-04-15T15:00:00.123456+00:00") == "15/04/2026 16:00:00 (UTC+01:00)"
    assert en.when("2026-03-04T07:30:00+00:00") == "2026-03-04 07:30:00 (UTC+00:00)"  # Ramadan: UTC+0
    assert fr("entry_title", index=7) == "Entrée n° 7" and en("entry_title", index=7) == "Entry no. 7"
    assert i18n.Translator("de", "Africa/Casablanca").lang == "fr"


# --- configuration ----------------------------------------------------------------------------------------------------


def config_copy(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    for name in ("gateway.toml", "purposes.toml", "clients.toml", "services.toml"):
        (config / name).write_text((ROOT / "config" / name).read_text())
    (config / "connectors").symlink_to(ROOT / "config" / "connectors")
    return config


def test_a_malformed_password_hash_is_refused_at_its_line(tmp_path: Path) -> None:
    config = config_copy(tmp_path)
    clients = config / "clients.toml"
    clients.write_text(clients.read_text().replace('role = "officer"\n', 'role = "officer"\n'
                                                   'console_password_hash = "plain-text-password"\n'))
    line = clients.read_text().splitlines().index('console_password_hash = "plain-text-password"') + 1
    with pytest.raises(ConfigError, match=f"clients.toml:{line} .*`anss-gateway officer password`"):
        load(config, env={})
    good = hash_password("a long console password")
    clients.write_text(clients.read_text().replace("plain-text-password", good))
    assert load(config, env={}).clients["dgssi.officer"].console_password_hash == good


def test_console_settings_are_read_and_checked(tmp_path: Path) -> None:
    config = config_copy(tmp_path)
    gateway = config / "gateway.toml"
    text = gateway.read_text()
    gateway.write_text(text.replace("session_idle_minutes = 30", "session_idle_minutes = 5")
                       .replace("# session_key_file =", "session_key_file = \"session.key\" #"))
    console = load(config, env={}).console
    assert console.session_idle_minutes == 5 and console.session_key_file == config / "session.key"
    assert load(config, env={"ANSS_GATEWAY_CONSOLE_SESSION_KEY_FILE": "/elsewhere.key"}).console.session_key_file \
        == Path("/elsewhere.key")
    gateway.write_text(text.replace("login_attempts = 5", "login_attempts = 0"))
    with pytest.raises(ConfigError, match=r"\[console\]: `login_attempts` must be greater than 0"):
        load(config, env={})
    gateway.write_text(text.replace("login_delay_s = 1 ", "login_delay_s = 2000 "))
    with pytest.raises(ConfigError, match=r"`login_max_delay_s` must be at least `login_delay_s`"):
        load(config, env={})
    gateway.write_text(text.replace("login_address_attempts = 20", "login_address_attempts = 50")
                       .replace("login_max_delay_s = 900", "login_max_delay_s = 60"))
    console = load(config, env={}).console
    assert (console.login_address_attempts, console.login_delay_s, console.login_max_delay_s) == (50, 1.0, 60.0)


@pytest.mark.parametrize("form_value", ["é" * 43, "☃", "\udc80"])
def test_a_non_ascii_csrf_or_login_token_is_refused_not_an_error(form_value: str) -> None:
    """hmac.compare_digest raises TypeError on non-ASCII str; the form value is whatever the client sent."""
    c = codec(Clock())
    session = c.open("anss.officer", "h")
    assert not csrf_matches(session, form_value)
    login_cookie, _ = c.login_token()
    assert not c.check_login_token(login_cookie, form_value)
