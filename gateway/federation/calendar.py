"""Date arithmetic the rules need: ages and the last complete months."""

from __future__ import annotations

from datetime import date


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def last_complete_months(today: date, count: int) -> tuple[str, str]:
    """(first, last) as YYYY-MM: the ``count`` complete calendar months before ``today``'s month."""
    year, month = today.year, today.month - 1
    if month == 0:
        year, month = year - 1, 12
    last = f"{year:04d}-{month:02d}"
    total = year * 12 + (month - 1) - (count - 1)
    first = f"{total // 12:04d}-{total % 12 + 1:02d}"
    return first, last
