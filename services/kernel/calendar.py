"""The platform's clock and calendar: rules are judged on the calendar day in Vietnam."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

VIETNAM = timezone(timedelta(hours=7))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def local_day(moment: datetime) -> date:
    return moment.astimezone(VIETNAM).date()
