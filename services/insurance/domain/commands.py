"""What a counter (or the pharmacy service) and the insurer's staff ask."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.insurance.domain.events import AttachedPrescription


@dataclass(frozen=True)
class CheckEligibility:
    card_identifier: str
    day: date | None                  # None: today


@dataclass(frozen=True)
class QuoteLine:
    line_number: int                  # 0: numbered by position
    drug_code: str
    quantity: int
    unit_price_vnd: int


@dataclass(frozen=True)
class QuoteCoverage:
    card_identifier: str
    day: date | None
    facility_code: str
    lines: tuple[QuoteLine, ...]
    prescription: AttachedPrescription | None = None   # the signed prescription the sale is made against
    pharmacy_code: str = ""           # where the sale happens (who the fund pays depends on it)


@dataclass(frozen=True)
class GetClaim:
    claim_id: str
