"""What prescribing tells the others, and what it hears back from the pharmacies."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.prescribing.domain.model import Prescription


@dataclass(frozen=True)
class PrescriptionIssued:
    prescription: Prescription
    override_reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class PrescriptionReplaced:
    replaced_code: str
    replacement: Prescription
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class PrescriptionCancelled:
    code: str
    reason: str
    cancelled_by: str
    occurred_at: datetime


Event = PrescriptionIssued | PrescriptionReplaced | PrescriptionCancelled


@dataclass(frozen=True)
class PrescriptionChanged:
    """Any prescription event: the patient's list is rewritten from the stored prescription."""
    code: str


@dataclass(frozen=True)
class DispensingClosed:
    """The pharmacies stopped selling under the code: their final count per line."""
    code: str
    lines: tuple[tuple[int, int], ...]   # (line number, quantity dispensed)


@dataclass(frozen=True)
class DispenseRecorded:
    """A sale (sign 1) or its reversal (sign -1) at some pharmacy."""
    event_id: str
    dispense_id: str
    code: str
    sign: int
    lines: tuple[tuple[int, int], ...]   # (line number, quantity)
