"""The words of the anomaly flags' explanations, in French and in English: times in the configured zone, dates,
numbers, shares, plurals and the working schedule (``gateway.audit.anomalies``, ``gateway.audit.anomaly_view``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.config.settings import AnomalySettings

DAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
DAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")


def local(t: datetime, s: AnomalySettings) -> datetime:
    return t.astimezone(ZoneInfo(s.timezone))


def clock(t: datetime) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def date_fr(t: datetime) -> str:
    return f"{'1er' if t.day == 1 else t.day} {MONTHS_FR[t.month - 1]} {t.year}"


def date_en(t: datetime) -> str:
    return f"{t.day} {MONTHS_EN[t.month - 1]} {t.year}"


def weekday_fr(t: datetime) -> str:
    return DAYS_FR[t.weekday()]


def weekday_en(t: datetime) -> str:
    return DAYS_EN[t.weekday()]


def _minutes(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def _days(days: tuple[int, ...], names: tuple[str, ...], span: str, join: str) -> str:
    if len(days) > 2 and days == tuple(range(days[0], days[-1] + 1)):
        return span.format(names[days[0]], names[days[-1]])
    return join.join(names[d] for d in days)


def schedule_fr(s: AnomalySettings) -> str:
    days = _days(s.working_days, DAYS_FR, "du {} au {}", ", ")
    return f"{days}, de {_minutes(s.working_hours[0])} à {_minutes(s.working_hours[1])}, heure de {s.timezone}"


def schedule_en(s: AnomalySettings) -> str:
    days = _days(s.working_days, DAYS_EN, "{}–{}", ", ")
    return f"{days}, {_minutes(s.working_hours[0])}–{_minutes(s.working_hours[1])}, {s.timezone} time"


def num_en(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def num_fr(x: float) -> str:
    return num_en(x).replace(".", ",")


def pct_en(share: float) -> str:
    return f"{num_en(round(share * 100, 1))}%"


def pct_fr(share: float) -> str:
    return f"{num_fr(round(share * 100, 1))} %"


def plural_fr(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n > 1 else ''}"


def plural_en(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"
