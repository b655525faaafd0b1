"""Doctor shopping (DOMAIN.md 9): the same patient receiving narcotic or psychotropic
prescriptions from 3 or more different prescribers within 30 days.

Prescriptions reach the insurer in any order (each code has its own partition), so a new
one is judged against every 30-day window that contains it, not only the one ending on it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(days=30)
MIN_PRESCRIBERS = 3


@dataclass(frozen=True)
class ControlledPrescription:
    code: str
    prescriber: str
    issued_at: datetime


@dataclass(frozen=True)
class DoctorShopping:
    codes: tuple[str, ...]
    prescribers: tuple[str, ...]
    window_start: datetime
    window_end: datetime


def doctor_shopping(new: ControlledPrescription, history: list[ControlledPrescription],
                    window: timedelta = WINDOW, min_prescribers: int = MIN_PRESCRIBERS) -> DoctorShopping | None:
    near = {p.code: p for p in history if abs(p.issued_at - new.issued_at) <= window}
    near[new.code] = new
    ordered = sorted(near.values(), key=lambda p: (p.issued_at, p.code))
    for first in ordered:
        if first.issued_at > new.issued_at or first.issued_at + window < new.issued_at:
            continue  # windows that start here do not contain the new prescription
        inside = [p for p in ordered if first.issued_at <= p.issued_at <= first.issued_at + window]
        prescribers = sorted({p.prescriber for p in inside})
        if len(prescribers) >= min_prescribers:
            return DoctorShopping(tuple(p.code for p in inside), tuple(prescribers), first.issued_at,
                                  max(p.issued_at for p in inside))
    return None
