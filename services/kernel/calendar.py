"""The platform's clock and calendar: rules are judged on the calendar day in Vietnam."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

VIETNAM = timezone(timedelta(hours=7))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def local_day(moment: datetime) -> date:
    return moment.astimezone(VIETNAM).date()


def months_between(born: date, on: date) -> int:
    """Whole months of age on a day (a child's age in months)."""
    months = (on.year - born.year) * 12 + (on.month - born.month)
    return months - (1 if on.day < born.day else 0)
