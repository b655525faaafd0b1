"""Who the fund pays (DOMAIN.md 7; Decree 188/2025 art. 60): Vietnam Social Security contracts
only with health facilities. A facility's own dispensary bills its BHYT sales of that facility's
prescriptions within the facility's encounter claim; a retail pharmacy (or another facility's
dispensary) sells for cash, except a line the prescriber marked not available at the facility,
which BHXH reimburses to the patient, capped at the facility's price. Pure."""
from __future__ import annotations

from dataclasses import dataclass

FACILITY, PATIENT, NONE = "facility", "patient", "none"
DISPENSARY, RETAIL = "dispensary", "retail"
RETAIL_NOT_COVERED = "RETAIL_NOT_COVERED"
REIMBURSABLE_TO_PATIENT = "REIMBURSABLE_TO_PATIENT"


@dataclass(frozen=True)
class Pharmacy:
    code: str
    kind: str                     # dispensary | retail
    facility_code: str = ""       # the facility a dispensary belongs to


def claims_for_facility(pharmacy: Pharmacy | None, prescribing_facility: str) -> bool:
    """True when the sale is a line of the prescribing facility's own encounter claim. An
    unknown pharmacy is treated as retail: the fund never pays someone it has no contract with."""
    return (pharmacy is not None and pharmacy.kind == DISPENSARY
            and pharmacy.facility_code.lower() == prescribing_facility.lower())

