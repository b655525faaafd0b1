"""How long a medication lasts; a prescription's status is services.kernel.status."""
from __future__ import annotations

from datetime import date


def remaining_days(start: date, days: int, today: date) -> int:
    return max(0, days - (today - start).days)
