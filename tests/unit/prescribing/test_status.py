from datetime import date

import pytest

from services.kernel.status import Status, derive
from services.prescribing.domain.status import remaining_days

UNTIL = date(2026, 12, 4)


@pytest.mark.parametrize("recorded, dispensed, today, expected", [
    ("active", {}, date(2026, 11, 30), Status.ACTIVE),
    ("active", {1: 5}, date(2026, 11, 30), Status.PARTIALLY_DISPENSED),
    ("active", {1: 20, 2: 10}, date(2026, 11, 30), Status.COMPLETED),
    ("active", {1: 20, 2: 10}, date(2027, 1, 1), Status.COMPLETED),   # completed stays completed
    ("active", {}, date(2026, 12, 4), Status.ACTIVE),                 # the last day of the window
    ("active", {}, date(2026, 12, 5), Status.EXPIRED),
    ("active", {1: 5}, date(2026, 12, 5), Status.EXPIRED),            # the rest lapses with the window
    ("cancelled", {1: 5}, date(2026, 11, 30), Status.CANCELLED),
    ("replaced", {}, date(2026, 11, 30), Status.REPLACED),
])
def test_status_on_a_day(recorded, dispensed, today, expected):
    assert derive(recorded, {1: 20, 2: 10}, dispensed, UNTIL, today) is expected


def test_remaining_days_count_down_from_the_start_and_stop_at_zero():
    assert remaining_days(date(2026, 11, 1), 30, date(2026, 11, 1)) == 30
    assert remaining_days(date(2026, 11, 1), 30, date(2026, 11, 21)) == 10
    assert remaining_days(date(2026, 11, 1), 30, date(2026, 12, 25)) == 0
