"""Anomaly flags: each detector on traffic built from real access-log entries, with its negative case.

Entries are made as the gateway makes them (``AccessRecord.canonical()``) and decoded as a store returns them.
Times are in April 2026, when Morocco is at UTC+1 (Africa/Casablanca); ``NOW`` is a Wednesday at 16:00 there.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from gateway.audit.anomalies import Flag, Kind, Severity, Window, detect, lookback, working
from gateway.audit.query import LogHit
from gateway.audit.record import CITIZEN_ACTOR, AccessRecord
from gateway.config.settings import ROOT, AnomalySettings, ConfigError, ConsoleSettings, load

NOW = datetime(2026, 4, 15, 15, 0, tzinfo=UTC)  # Wednesday 15 April 2026, 16:00 in Casablanca
S = AnomalySettings()
ASD, CNSS, HOUSING = "anss.asd", "cnss.amo-tadamon", "mhpv.housing"


class Log:
    """Entries in the order they are written, each with its index."""

    def __init__(self) -> None:
        self.hits: list[LogHit] = []

    def add(self, time: datetime, client: str | None, purpose: str | None = "asd.eligibility",
            subject: str | None = None, status: int = 200, outcome: str = "answered") -> int:
        record = AccessRecord(time=time.isoformat(timespec="microseconds"), request_id=f"r{len(self.hits)}",
                              method="POST", path="/v1/verifications", status=status, outcome=outcome,
                              latency_ms=3.0, client=client, purpose=purpose, subject=subject,
                              checks=("identity",))
        self.hits.append(LogHit(len(self.hits), orjson.loads(record.canonical())))
        return len(self.hits) - 1


def at(days_ago: int, hour_utc: int, minute: int = 0) -> datetime:
    return (NOW - timedelta(days=days_ago)).replace(hour=hour_utc, minute=minute, second=0)


def normal_traffic(log: Log, days: int = 15) -> None:
    """Three clients on working days from 09:00 to 17:00 in Casablanca (08:00-16:00 UTC): ASD 20 queries an hour
    with a refusal now and then, CNSS 5 an hour, each citizen looked up by one or two clients."""
    for day in range(days, -1, -1):
        if at(day, 8).weekday() >= 5:
            continue
        for hour in range(8, 16):
            if at(day, hour) > NOW:
                break
            for i in range(20):
                citizen = f"citizen-{day}-{hour}-{i}"
                log.add(at(day, hour, i * 3), ASD, subject=citizen,
                        status=403 if i == 7 else 200, outcome="forbidden_check" if i == 7 else "answered")
                if i < 5:
                    log.add(at(day, hour, i * 3 + 1), CNSS, "amo.tadamon.eligibility", subject=citizen)


def flags_of(log: Log, kind: Kind, settings: AnomalySettings = S) -> list[Flag]:
    return [f for f in detect(log.hits, NOW, settings) if f.kind is kind]


def test_normal_traffic_flags_nothing() -> None:
    log = Log()
    normal_traffic(log)
    assert len(log.hits) > 2000
    assert detect(log.hits, NOW, S) == []


# --- volume ----------------------------------------------------------------------------------------------------------


def test_an_hour_far_above_the_clients_own_baseline_is_flagged() -> None:
    log = Log()
    normal_traffic(log)
    spike = [log.add(at(0, 12, 30) + timedelta(seconds=i), ASD) for i in range(130)]  # 150 that hour: 7.5 × 20
    [flag] = flags_of(log, Kind.VOLUME)
    assert flag.clients == (ASD,)
    assert flag.count == 150 and set(spike[:80]) <= set(flag.entries) and len(flag.entries) == 100
    assert flag.severity is Severity.MEDIUM
    assert "150 requests between 13:00 and 14:00 on 15 April 2026" in flag.explanation_en
    assert "7.5 times its usual volume (a median of 20 requests per active hour" in flag.explanation_en
    assert "150 requêtes entre 13:00 et 14:00 le 15 avril 2026" in flag.explanation_fr
    assert "7,5 fois son volume habituel" in flag.explanation_fr


def test_a_busier_hour_within_the_factor_is_not_flagged() -> None:
    log = Log()
    normal_traffic(log)
    for i in range(70):  # 90 that hour: 4.5 × the usual 20, under the factor 5
        log.add(at(0, 12, 30) + timedelta(seconds=i), ASD)
    assert flags_of(log, Kind.VOLUME) == []


def test_a_client_without_history_is_flagged_only_past_the_minimum() -> None:
    log = Log()
    normal_traffic(log)
    for i in range(49):
        log.add(at(0, 9, 10) + timedelta(seconds=i), HOUSING, "partner.social-housing")
    assert flags_of(log, Kind.VOLUME) == []
    log.add(at(0, 9, 59), HOUSING, "partner.social-housing")
    [flag] = flags_of(log, Kind.VOLUME)
    assert flag.clients == (HOUSING,) and flag.count == 50 and flag.severity is Severity.HIGH
    assert "no request at all over the previous 14 days" in flag.explanation_en


def test_consecutive_busy_hours_make_one_flag() -> None:
    log = Log()
    normal_traffic(log)
    for hour in (10, 11):
        for i in range(200):
            log.add(at(0, hour, 1) + timedelta(seconds=i), ASD)
    [flag] = flags_of(log, Kind.VOLUME)
    assert flag.count == 440 and flag.severity is Severity.HIGH  # 220 an hour: 11 × 20
    assert "between 11:00 and 13:00" in flag.explanation_en


# --- outside working hours -------------------------------------------------------------------------------------------


def test_working_hours_are_read_in_casablanca_time() -> None:
    assert working(datetime(2026, 4, 15, 7, 30, tzinfo=UTC), S)  # 08:30 in Casablanca
    assert not working(datetime(2026, 4, 15, 6, 30, tzinfo=UTC), S)  # 07:30
    assert not working(datetime(2026, 4, 15, 17, 0, tzinfo=UTC), S)  # 18:00: the end is excluded
    assert not working(datetime(2026, 4, 11, 10, 0, tzinfo=UTC), S)  # a Saturday
    # during Ramadan Morocco is at UTC+0: 07:30 UTC is 07:30 there
    assert not working(datetime(2026, 3, 4, 7, 30, tzinfo=UTC), S)


def test_requests_outside_working_hours_are_flagged() -> None:
    log = Log()
    normal_traffic(log)
    late = log.add(at(0, 2, 14), CNSS, "amo.tadamon.eligibility")  # 03:14 in Casablanca
    night = log.add(at(0, 3), CNSS, "amo.tadamon.eligibility", status=403, outcome="forbidden_check")
    [flag] = flags_of(log, Kind.OUTSIDE_HOURS)
    assert flag.clients == (CNSS,) and flag.entries == (late, night) and flag.severity is Severity.MEDIUM
    assert flag.explanation_en == (
        "cnss.amo-tadamon made 2 requests outside working hours (Monday–Friday, 08:00–18:00, Africa/Casablanca "
        "time), the first on Wednesday 15 April 2026 at 03:14.")
    assert flag.explanation_fr.startswith("cnss.amo-tadamon a fait 2 requêtes en dehors des heures de travail "
                                          "(du lundi au vendredi, de 08:00 à 18:00, heure de Africa/Casablanca)")


def test_configured_hours_and_days_decide() -> None:
    log = Log()
    normal_traffic(log)
    around_the_clock = replace(S, working_days=tuple(range(7)), working_hours=(0, 24 * 60))
    log.add(at(0, 2), CNSS, "amo.tadamon.eligibility")
    assert flags_of(log, Kind.OUTSIDE_HOURS, around_the_clock) == []
    short_day = replace(S, working_hours=(10 * 60, 12 * 60))  # normal traffic runs 09:00-17:00: all of it is flagged
    assert {f.clients for f in flags_of(log, Kind.OUTSIDE_HOURS, short_day)} == {(ASD,), (CNSS,)}


def test_citizens_reading_their_own_log_are_flagged_only_for_refusal_bursts() -> None:
    """Citizens are many people behind one `client`, reading at any hour: night reads, a busy evening or a
    citizen reading their own log are not an agency's anomaly; a burst of refused tokens still is."""
    log = Log()
    normal_traffic(log)
    for i in range(200):  # a busy night of citizens' reads, some citizens also looked up by two agencies
        log.add(at(0, 1) + timedelta(seconds=10 * i), CITIZEN_ACTOR, None, subject=f"citizen-0-9-{i % 20}",
                outcome="citizen_access_log_read")
    assert detect(log.hits, NOW, S) == []
    refused = [log.add(at(0, 2) + timedelta(seconds=5 * i), CITIZEN_ACTOR, None, status=401,
                       outcome="citizen_token_invalid") for i in range(10)]
    [flag] = detect(log.hits, NOW, S)
    assert flag.kind is Kind.REFUSAL_BURST and flag.clients == (CITIZEN_ACTOR,) and flag.entries == tuple(refused)


# --- bursts of refusals ----------------------------------------------------------------------------------------------


def test_a_burst_of_refusals_is_flagged() -> None:
    log = Log()
    normal_traffic(log)
    burst = [log.add(at(0, 13, 5) + timedelta(seconds=20 * i), HOUSING, "asd.eligibility", status=403,
                     outcome="forbidden_purpose") for i in range(10)]
    [flag] = flags_of(log, Kind.REFUSAL_BURST)
    assert flag.clients == (HOUSING,) and flag.entries == tuple(burst) and flag.severity is Severity.MEDIUM
    assert flag.explanation_en == (
        'mhpv.housing was refused 10 times in 3 minutes (between 14:05 and 14:08 on 15 April 2026), mostly '
        '"forbidden_purpose"; the threshold is 10 refusals in 5 minutes.')
    assert "a essuyé 10 refus en 3 minutes" in flag.explanation_fr


def test_refusals_below_the_threshold_or_spread_out_are_not_flagged() -> None:
    log = Log()
    normal_traffic(log)
    for i in range(9):
        log.add(at(0, 13, 5) + timedelta(seconds=20 * i), HOUSING, status=403, outcome="forbidden_purpose")
    for i in range(12):  # twelve, but one every six minutes
        log.add(at(0, 8) + timedelta(minutes=6 * i), CNSS, status=429, outcome="rate_limited")
    for i in range(10):  # refused before the caller was known: nobody to attribute them to
        log.add(at(0, 14) + timedelta(seconds=i), None, None, status=401, outcome="invalid_assertion")
    assert flags_of(log, Kind.REFUSAL_BURST) == []


def test_a_long_burst_is_one_flag_and_two_bursts_are_two() -> None:
    log = Log()
    for i in range(30):
        log.add(at(0, 10) + timedelta(seconds=30 * i), ASD, status=429, outcome="rate_limited")
    for i in range(10):
        log.add(at(0, 13) + timedelta(seconds=i), ASD, status=403, outcome="forbidden_check")
    first, second = sorted(flags_of(log, Kind.REFUSAL_BURST), key=lambda f: f.start)
    assert first.count == 30 and first.severity is Severity.HIGH and '"rate_limited"' in first.explanation_en
    assert second.count == 10 and second.entries == tuple(range(30, 40))


def test_a_burst_of_refusals_attributed_to_no_client_is_flagged() -> None:
    log = Log()
    normal_traffic(log)
    burst = [log.add(at(0, 13, 10) + timedelta(seconds=2 * i), None, None, status=401,
                     outcome="invalid_assertion" if i % 4 else "unauthenticated") for i in range(120)]
    [flag] = flags_of(log, Kind.ANONYMOUS_REFUSALS)
    assert flag.clients == () and flag.count == 120 and flag.entries == tuple(burst[:100])
    assert flag.severity is Severity.MEDIUM and flag.id == f"anonymous_refusals-{burst[0]}"
    assert flag.explanation_en == (
        "120 requests from no identified client were refused in 4 minutes (between 14:10 and 14:13 on 15 April "
        '2026), mostly "invalid_assertion": someone without valid credentials keeps trying; the threshold is 100 '
        "refusals in 5 minutes.")
    assert "120 requêtes sans client identifié ont été refusées en 4 minutes" in flag.explanation_fr
    assert flags_of(log, Kind.REFUSAL_BURST) == []  # nobody to attribute them to
    assert [f.kind for f in detect(log.hits, NOW, replace(S, anonymous_refusals=400))] == []


def test_aggregated_refusals_count_by_their_count() -> None:
    """Beyond an address's budget refusals are counted in one entry (``refusals_aggregated``, detail.count): a
    flood logged as 20 entries and 3 counters of 40 is 140 refusals, not 23."""
    log = Log()
    normal_traffic(log)
    single = [log.add(at(0, 13, 10) + timedelta(seconds=i), None, None, status=401, outcome="invalid_assertion")
              for i in range(20)]
    counters = []
    for i in range(3):
        record = AccessRecord(time=(at(0, 13, 11) + timedelta(seconds=30 * i)).isoformat(timespec="microseconds"),
                              request_id=f"agg{i}", method="*", path="*", status=429, outcome="refusals_aggregated",
                              latency_ms=0.0, detail={"code": "invalid_assertion", "count": 40, "window_s": 60})
        log.hits.append(LogHit(len(log.hits), orjson.loads(record.canonical())))
        counters.append(len(log.hits) - 1)
    [flag] = flags_of(log, Kind.ANONYMOUS_REFUSALS)
    assert flag.count == 140 and flag.entries == (*single, *counters)
    assert flag.explanation_en.startswith("140 requests from no identified client were refused")
    assert flags_of(log, Kind.ANONYMOUS_REFUSALS, replace(S, anonymous_refusals=141)) == []


def test_anonymous_entries_that_are_not_refusals_or_are_spread_out_are_not_flagged() -> None:
    log = Log()
    normal_traffic(log)
    for i in range(150):  # the console's login page and stylesheet: no client, not refused
        log.add(at(0, 9) + timedelta(seconds=i), None, None, status=200, outcome="console_login_form")
    for i in range(150):  # refused, but one every two minutes
        log.add(at(0, 8) + timedelta(minutes=2 * i), None, None, status=401, outcome="unauthenticated")
    for i in range(150):  # a known client's refusals are its own burst, not an anonymous one
        log.add(at(0, 13) + timedelta(seconds=i), CNSS, status=429, outcome="rate_limited")
    assert flags_of(log, Kind.ANONYMOUS_REFUSALS) == []
    assert [f.clients for f in flags_of(log, Kind.REFUSAL_BURST)] == [(CNSS,)]


# --- one citizen, many clients ---------------------------------------------------------------------------------------


def test_one_citizen_looked_up_by_many_clients_is_flagged() -> None:
    log = Log()
    normal_traffic(log)
    citizen = "f" * 64
    looks = [log.add(at(0, 9), ASD, subject=citizen),
             log.add(at(0, 10), CNSS, "amo.tadamon.eligibility", subject=citizen),
             log.add(at(0, 11), HOUSING, "partner.social-housing", subject=citizen, status=403,
                     outcome="consent_missing")]
    [flag] = flags_of(log, Kind.CITIZEN_MANY_CLIENTS)
    assert flag.subject == citizen and flag.clients == (ASD, CNSS, HOUSING) and flag.entries == tuple(looks)
    assert flag.explanation_en == (
        "The citizen with pseudonym ffffffffffff… was looked up by 3 different clients in 2 hours (anss.asd, "
        "cnss.amo-tadamon, mhpv.housing); the threshold is 3 clients in 24 hours.")
    assert "a été consulté par 3 clients différents en 2 heures" in flag.explanation_fr


def test_a_citizen_looked_up_by_few_clients_or_far_apart_is_not_flagged() -> None:
    log = Log()
    normal_traffic(log)
    log.add(at(0, 9), ASD, subject="a" * 64)
    log.add(at(0, 10), CNSS, "amo.tadamon.eligibility", subject="a" * 64)
    log.add(at(0, 11), ASD, subject="a" * 64)
    log.add(at(0, 12), "officer.one", None, subject="a" * 64)  # an officer's search has no purpose: not a look-up
    narrow = replace(S, citizen_window_hours=1.5)
    log.add(at(0, 9), ASD, subject="b" * 64)
    log.add(at(0, 11), CNSS, "amo.tadamon.eligibility", subject="b" * 64)
    log.add(at(0, 13), HOUSING, "partner.social-housing", subject="b" * 64)
    assert flags_of(log, Kind.CITIZEN_MANY_CLIENTS, narrow) == []
    assert [f.subject for f in flags_of(log, Kind.CITIZEN_MANY_CLIENTS)] == ["b" * 64]


# --- rarely used purposes --------------------------------------------------------------------------------------------


def test_a_purpose_the_client_rarely_uses_is_flagged() -> None:
    log = Log()
    normal_traffic(log)
    for day in (5, 6):  # 2 of ASD's ~1500 past queries
        log.add(at(day, 9), ASD, "amo.tadamon.eligibility")
    rare = log.add(at(0, 9, 30), ASD, "amo.tadamon.eligibility")
    never = log.add(at(0, 10, 30), ASD, "partner.social-housing")
    rare_flag, never_flag = sorted(flags_of(log, Kind.RARE_PURPOSE), key=lambda f: f.start)
    assert rare_flag.purpose == "amo.tadamon.eligibility" and rare_flag.entries == (rare,)
    assert rare_flag.severity is Severity.LOW
    assert "makes up only 0.1% of its" in rare_flag.explanation_en and "0,1 %" in rare_flag.explanation_fr
    assert never_flag.purpose == "partner.social-housing" and never_flag.entries == (never,)
    assert never_flag.severity is Severity.MEDIUM and "absent from its" in never_flag.explanation_en


def test_rare_purposes_need_enough_history() -> None:
    log = Log()
    for i in range(99):
        log.add(at(3, 9) + timedelta(seconds=i), ASD)
    log.add(at(0, 9), ASD, "amo.tadamon.eligibility")
    assert flags_of(log, Kind.RARE_PURPOSE) == []
    log.add(at(2, 9), ASD)
    assert len(flags_of(log, Kind.RARE_PURPOSE)) == 1


# --- the window, the output, the configuration -----------------------------------------------------------------------


def test_the_window_and_the_baseline() -> None:
    log = Log()
    old = log.add(NOW - lookback(S) - timedelta(seconds=1), ASD)
    base = log.add(NOW - timedelta(days=2), ASD)
    recent = log.add(NOW - timedelta(hours=1), ASD)
    future = log.add(NOW + timedelta(seconds=1), ASD)
    window = Window.of(log.hits, NOW, S)
    assert [r.index for r in window.history] == [base]
    assert [r.index for r in window.recent] == [recent]
    assert {old, future}.isdisjoint(r.index for r in (*window.history, *window.recent))


def test_flags_come_most_serious_first_and_serialise() -> None:
    log = Log()
    normal_traffic(log)
    for i in range(40):
        log.add(at(0, 13) + timedelta(seconds=i), HOUSING, status=403, outcome="forbidden_purpose")
    log.add(at(0, 3), CNSS, "amo.tadamon.eligibility")
    flags = detect(log.hits, NOW, S)
    assert [f.kind for f in flags] == [Kind.REFUSAL_BURST, Kind.OUTSIDE_HOURS]
    document = flags[0].to_json()
    assert document["id"] == f"refusal_burst-{flags[0].entries[0]}" and document["severity"] == "high"
    assert set(document["explanation"]) == {"fr", "en"} and document["count"] == 40
    assert flags[1].explanation("fr") == flags[1].explanation_fr


def write_config(tmp_path: Path, anomalies: str) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    for name in ("purposes.toml", "clients.toml", "services.toml"):
        (config / name).write_text((ROOT / "config" / name).read_text())
    (config / "connectors").symlink_to(ROOT / "config" / "connectors")
    before, _, after = (ROOT / "config" / "gateway.toml").read_text().partition("[audit.anomalies]\n")
    rest = after[after.index("\n["):]  # the tables after ours
    (config / "gateway.toml").write_text(f"{before}[audit.anomalies]\n{anomalies}{rest}")
    return config


def test_the_shipped_configuration_holds_the_defaults() -> None:
    settings = load(env={})
    assert settings.anomalies == AnomalySettings()
    assert settings.console == ConsoleSettings()


def test_configuration_is_read_and_checked(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'working_days = ["sun", "mon"]\nworking_hours = ["07:30", "15:00"]\n'
                                    "refusal_burst = 3\nrare_purpose_share = 0.1\nanonymous_refusals = 30\n"
                                    "anonymous_refusals_minutes = 1.5\n")
    settings = load(config, env={}).anomalies
    assert settings.working_days == (0, 6) and settings.working_hours == (450, 900)
    assert settings.anonymous_refusals == 30 and settings.anonymous_refusals_minutes == 1.5
    assert settings.refusal_burst == 3 and settings.rare_purpose_share == 0.1 and settings.baseline_days == 14


@pytest.mark.parametrize(("text", "complaint"), [
    ('timezone = "Mars/Olympus"', "unknown `timezone`"),
    ('working_days = ["lundi"]', "`working_days`"),
    ('working_hours = ["18:00", "08:00"]', "start before they end"),
    ('working_hours = ["8h", "18:00"]', "HH:MM"),
    ("refusal_burst = 0", "`refusal_burst` must be greater than 0"),
    ("anonymous_refusals_minutes = 0", "`anonymous_refusals_minutes` must be greater than 0"),
    ("rare_purpose_share = 5", "between 0 and 1"),
])
def test_configuration_mistakes_are_named(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=r"\[audit\.anomalies\]") as raised:
        load(write_config(tmp_path, text + "\n"), env={})
    assert complaint in str(raised.value)
