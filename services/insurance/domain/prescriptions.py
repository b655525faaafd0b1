"""What the insurer reads of a prescription: its facility (whose prices cap the fund), its
patient (whom the card must belong to), its lines, and the visit it belongs to (over which
the 15% threshold is judged). Pure."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from services.insurance.domain import identifiers
from services.insurance.domain.model import Member


@dataclass(frozen=True)
class Patient:
    citizen_id: str = ""          # 12-digit CCCD, when the prescription names the patient by it
    card: str = ""                # the BHYT card the hospital recorded, if any


@dataclass(frozen=True)
class Visit:
    """One encounter at one facility (`MA_LK` in Decision 130's tables)."""
    key: str                      # facility:encounter id, or the prescription code when none is stated
    other_costs_vnd: int          # in-scope examination, tests and the rest, as the hospital states them
    day: date | None              # the day of the visit (its base salary sets the threshold); None: the sale's
    stated_at: datetime           # when the hospital stated the costs (the latest statement wins)


@dataclass(frozen=True)
class PrescriptionFacts:
    code: str
    facility_code: str
    patient: Patient
    lines: tuple[tuple[int, str, int], ...]    # (line number, drug code, quantity)
    visit: Visit
    not_available: frozenset[int] = frozenset()  # lines the prescriber marked not available at the facility
    valid_until: date | None = None             # the last day it can be dispensed (None: not known)


def visit_key(facility_code: str, encounter_id: str, code: str) -> str:
    return f"{facility_code.lower()}:{encounter_id}" if encounter_id else f"rx:{code}"


CARD_NOT_PATIENTS = "BHYT_CARD_NOT_PATIENTS"


def patient_problem(member: Member, patient: Patient) -> str:
    """Empty when the member is the prescription's patient, else why not. The card the hospital
    recorded must be the member's (any card of theirs: same social security number) and the
    patient's citizen id the member's; a prescription naming neither cannot bind a card."""
    if not patient.card and not patient.citizen_id:
        return "the prescription names the patient by neither a citizen ID nor a BHYT card"
    if patient.card:
        parsed = identifiers.parse(patient.card)
        if parsed is None or parsed.kind != "card" or identifiers.ssn_of_card(parsed.value) != member.member_id:
            return "the card presented is not the one the hospital recorded for the patient"
    if patient.citizen_id and patient.citizen_id != member.citizen_id:
        return "the card presented belongs to someone other than the prescription's patient"
    return ""
