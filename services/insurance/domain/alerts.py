"""Doctor shopping (DOMAIN.md 9): the same patient receiving narcotic or psychotropic
prescriptions from 3 or more different prescribers within 30 days."""
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
    """Judged at the new prescription's issue time, over the window that ends there."""
    start = new.issued_at - window
    inside = {p.code: p for p in history if start <= p.issued_at <= new.issued_at}
    inside[new.code] = new
    prescribers = sorted({p.prescriber for p in inside.values()})
    if len(prescribers) < min_prescribers:
        return None
    ordered = sorted(inside.values(), key=lambda p: p.issued_at)
    return DoctorShopping(tuple(p.code for p in ordered), tuple(prescribers), start, new.issued_at)
