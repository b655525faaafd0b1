"""What the pharmacy knows of a prescription and of each sale. Pure values."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from services.kernel import status as rx_status


@dataclass(frozen=True)
class PrescribedLine:
    line_number: int
    drug_code: str
    quantity: int
    batch_start: date | None = None   # narcotic batches: the line may be dispensed only within its dates
    batch_end: date | None = None


@dataclass(frozen=True)
class Prescription:
    """The signed prescription as issued, with the fields the dispensing rules read.
    `document` is the signed original, passed on untouched (claims carry it to the insurer)."""
    code: str
    facility_code: str
    patient_card: str
    diagnoses: tuple[str, ...]
    valid_until: date
    lines: tuple[PrescribedLine, ...]
    document: bytes = field(repr=False, default=b"")
    replaces_code: str = ""
    new_supply: bool = False           # a replacement whose quantities are a new supply (nothing carried)

    def line(self, number: int) -> PrescribedLine | None:
        return next((line for line in self.lines if line.line_number == number), None)


@dataclass(frozen=True)
class Ledger:
    """A prescription's dispensing state across every pharmacy."""
    prescription: Prescription
    recorded_status: str               # active | awaiting (its predecessor is not settled) | cancelled | replaced
    remaining: dict[int, int]
    successor: str = ""                # the code that replaced it

    @property
    def prescribed(self) -> dict[int, int]:
        return {line.line_number: line.quantity for line in self.prescription.lines}

    @property
    def dispensed(self) -> dict[int, int]:
        return {n: q - self.remaining.get(n, 0) for n, q in self.prescribed.items()}

    def status_on(self, today: date) -> rx_status.Status:
        return rx_status.derive(self.recorded_status, self.prescribed, self.dispensed,
                                self.prescription.valid_until, today)


@dataclass(frozen=True)
class Closed:
    """A ledger closed for good: what was dispensed under its code per line, counting what
    its predecessors dispensed (carried into it)."""
    prescription: Prescription
    status: str
    successor: str
    dispensed: dict[int, int]


@dataclass(frozen=True)
class QuotedAmounts:
    insured_vnd: int
    fund_vnd: int
    patient_vnd: int
    payment_ratio: int
    reimbursable_vnd: int = 0          # BHXH reimburses the patient later (a retail sale of a flagged line)


@dataclass(frozen=True)
class QuoteLine:
    line_number: int
    drug_code: str
    quantity: int
    unit_price_vnd: int


@dataclass(frozen=True)
class Quote:
    """The insurer's answer for a card at the counter."""
    quote_id: str
    member_id: str
    card_code: str
    lines: dict[int, QuotedAmounts]
    payee: str = "facility"            # facility: a claim; patient: a reimbursement request; none: cash


@dataclass(frozen=True)
class ReceiptLine:
    line_number: int
    quantity: int
    insured_vnd: int
    fund_vnd: int
    patient_vnd: int
    reimbursable_vnd: int = 0


@dataclass(frozen=True)
class Receipt:
    """What a sale cost whom: kept with the idempotency key, so a retry gets it again."""
    dispense_id: str
    claim_id: str
    lines: tuple[ReceiptLine, ...]
    reimbursement_id: str = ""

    @property
    def reimbursable_total_vnd(self) -> int:
        return sum(line.reimbursable_vnd for line in self.lines)

    @property
    def fund_total_vnd(self) -> int:
        return sum(line.fund_vnd for line in self.lines)

    @property
    def patient_total_vnd(self) -> int:
        return sum(line.patient_vnd for line in self.lines)


@dataclass(frozen=True)
class DispenseResult:
    receipt: Receipt
    remaining: dict[int, int]           # every line of the prescription, after the sale

    @property
    def status(self) -> rx_status.Status:
        done = all(v == 0 for v in self.remaining.values())
        return rx_status.Status.COMPLETED if done else rx_status.Status.PARTIALLY_DISPENSED


@dataclass(frozen=True)
class PriorDispense:
    fingerprint: str
    receipt: Receipt
    remaining: dict[int, int]


@dataclass(frozen=True)
class SoldLine:
    line_number: int
    drug_code: str
    quantity: int
    unit_price_vnd: int
    substitution: bool


@dataclass(frozen=True)
class DispenseRecord:
    """One sale, as a reversal needs it."""
    dispense_id: str
    code: str
    pharmacy: str
    dispensed_at: datetime
    claim_id: str
    member_id: str
    lines: tuple[SoldLine, ...]
    reversed_at: datetime | None = None


@dataclass(frozen=True)
class LookupResult:
    ledger: Ledger
    status: rx_status.Status
    signature_verified: bool
    identity_hidden: bool = False      # a protected diagnosis: no pharmacy sees who the patient is


@dataclass(frozen=True)
class ReversalResult:
    dispense_id: str
    ledger: Ledger
