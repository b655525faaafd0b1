"""How long a medication lasts, and a medication-list entry's status."""
from __future__ import annotations

from datetime import date

from services.kernel.status import Status, derive
from services.prescribing.domain.model import ActiveMedication


def remaining_days(start: date, days: int, today: date) -> int:
    return max(0, days - (today - start).days)


def of_medication(med: ActiveMedication, today: date) -> Status:
    """A medication-list entry's status: its prescription line's, by the one derivation."""
    return derive(med.status, {med.line_number: med.prescribed}, {med.line_number: med.dispensed},
                  med.valid_until, today)
