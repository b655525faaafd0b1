"""A prescription's status on a day, from what was recorded and what was dispensed: the one
derivation every service uses."""
from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Mapping


class Status(StrEnum):
    ACTIVE = "active"
    PARTIALLY_DISPENSED = "partially_dispensed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REPLACED = "replaced"
    EXPIRED = "expired"


FINAL = frozenset({Status.CANCELLED, Status.REPLACED, Status.COMPLETED, Status.EXPIRED})


def derive(recorded: str, prescribed: Mapping[int, int], dispensed: Mapping[int, int], valid_until: date,
           today: date) -> Status:
    """`recorded` is what the prescriber's last command left (active, cancelled, replaced);
    quantities are per line number."""
    if recorded in (Status.CANCELLED, Status.REPLACED):
        return Status(recorded)
    if prescribed and all(dispensed.get(line, 0) >= qty for line, qty in prescribed.items()):
        return Status.COMPLETED
    if today > valid_until:
        return Status.EXPIRED
    if any(dispensed.get(line, 0) > 0 for line in prescribed):
        return Status.PARTIALLY_DISPENSED
    return Status.ACTIVE
