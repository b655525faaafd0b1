"""What the pharmacy tells the other services, and what it hears from prescribing."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from services.pharmacy.domain.model import Closed, DispenseRecord, Prescription, Quote, Receipt, SoldLine


@dataclass(frozen=True)
class MedicationDispensed:
    dispense_id: str
    prescription: Prescription
    pharmacy: str
    claim_id: str                      # the claim, or the reimbursement request; empty for a cash sale
    lines: tuple[SoldLine, ...]
    occurred_at: datetime
    invoice_number: str = ""
    payer_bhyt: bool = True            # False: the patient paid everything at the counter
    # What a point-of-sale retry needs after the ledger is rebuilt from the topics: the
    # request's key and fingerprint and the answer it got (services/pharmacy/rebuild.py).
    idempotency_key: str = ""
    fingerprint: str = ""
    receipt: Receipt | None = None


@dataclass(frozen=True)
class ClaimSubmitted:
    claim_id: str
    dispense_id: str
    quote: Quote
    prescription: Prescription
    pharmacy: str
    dispensed_on: date
    lines: tuple[SoldLine, ...]
    occurred_at: datetime


@dataclass(frozen=True)
class ReimbursementRequested:
    """A retail sale of lines the prescriber marked not available at the facility: BHXH is
    asked to reimburse the patient what the quote computed."""
    reimbursement_id: str
    dispense_id: str
    quote: Quote
    prescription: Prescription
    pharmacy: str
    dispensed_on: date
    lines: tuple[SoldLine, ...]
    invoice_number: str
    occurred_at: datetime


@dataclass(frozen=True)
class DispenseReversed:
    record: DispenseRecord
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class ClaimReversalRequested:
    claim_id: str
    dispense_id: str
    member_id: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class DispensingClosed:
    """No pharmacy sells under the code any more: what was dispensed under it, per line
    (counting what its predecessors dispensed), for the prescriber."""
    closed: Closed
    occurred_at: datetime


Event = (MedicationDispensed | ClaimSubmitted | ReimbursementRequested | DispenseReversed | ClaimReversalRequested
         | DispensingClosed)


@dataclass(frozen=True)
class PrescriptionIssued:
    prescription: Prescription
    at: datetime | None = None          # when it happened (the event's time; None: not known)


@dataclass(frozen=True)
class PrescriptionClosed:
    """Cancelled or replaced: final, whatever order the events arrive in."""
    code: str
    status: str
    successor: str = ""
    at: datetime | None = None          # when it happened (the event's time; None: not known)
