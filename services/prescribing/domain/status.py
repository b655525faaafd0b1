"""A prescription's status on a given day, from what was recorded and what was dispensed."""
from __future__ import annotations

from datetime import date

from services.prescribing.domain.model import Status


def derive(recorded: str, prescribed: dict[int, int], dispensed: dict[int, int], valid_until: date,
           today: date) -> Status:
    if recorded == Status.CANCELLED:
        return Status.CANCELLED
    if recorded == Status.REPLACED:
        return Status.REPLACED
    if prescribed and all(dispensed.get(line, 0) >= qty for line, qty in prescribed.items()):
        return Status.COMPLETED
    if today > valid_until:
        return Status.EXPIRED
    if any(q > 0 for q in dispensed.values()):
        return Status.PARTIALLY_DISPENSED
    return Status.ACTIVE


def remaining_days(start: date, days: int, today: date) -> int:
    return max(0, days - (today - start).days)
