"""common.v1.Date <-> datetime.date ('today' in Vietnam is services.kernel.calendar.local_day)."""
from __future__ import annotations

from datetime import date

from eprescription.common.v1 import common_pb2


def from_proto(value: common_pb2.Date) -> date | None:
    """None for an unset or impossible date (month 13, February 30)."""
    if value.year == 0 and value.month == 0 and value.day == 0:
        return None
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        return None


def to_proto(day: date | None) -> common_pb2.Date:
    return common_pb2.Date() if day is None else common_pb2.Date(year=day.year, month=day.month, day=day.day)
