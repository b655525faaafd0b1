"""Rules change on dates: a table of (effective_from, value) rows, and the row in force on a day."""
from __future__ import annotations

from datetime import date
from typing import Iterable, TypeVar

T = TypeVar("T")


def in_force(table: Iterable[tuple[date, T]], day: date) -> T:
    """The value of the latest row that took effect on or before `day`."""
    current, found = None, False
    for effective_from, value in sorted(table, key=lambda row: row[0]):
        if effective_from <= day:
            current, found = value, True
    if not found:
        raise LookupError(f"no rule in force on {day.isoformat()}")
    return current
