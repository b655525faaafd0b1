"""The rules a prescription must meet to be issued (Circular 26/2025/TT-BYT), judged on
the issue date with the reference data in force. Every rule reports the field it is about."""
from __future__ import annotations

import math
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Callable

from services.kernel import icd10
from services.kernel.calendar import months_between
from services.kernel.drugs import ControlledClass, Drug
from services.prescribing.domain.model import (Batch, Draft, Line, Patient, ReferenceData, RxType, Violation)

CCCD = re.compile(r"^\d{12}$")
HEALTH_ID = re.compile(r"^[0-9A-Z]{8,20}$")
PASSPORT = re.compile(r"^[A-Z0-9]{6,12}$")
BHYT_CARD = re.compile(r"^[A-Z]{2}[1-5]\d{12}$")
CHILD_MONTHS = 72
MAX_LINES = 50
# Units whose quantity is a count of doses, so quantity = dose x times a day x days.
COUNTABLE_UNITS = frozenset({"tablet", "capsule", "sachet", "ampoule", "vial", "ml", "suppository"})

IcdCheck = Callable[[str], bool]


DOSE = re.compile(r"^\d{1,4}(\.\d{1,3})?$")   # units per administration: plain decimal text, at most 9999.999


def parse_dose(text: str) -> Decimal | None:
    """A plain positive decimal ("1", "0.5", "2,5"): no exponent, no sign, a few digits, so
    dose x per day x days stays small whatever the text."""
    plain = text.strip().replace(",", ".") if isinstance(text, str) else ""
    if not DOSE.match(plain):
        return None
    value = Decimal(plain)
    return value if value > 0 else None


def required_quantity(line: Line) -> int | None:
    dose = parse_dose(line.dose)
    if dose is None:
        return None
    return math.ceil(dose * line.per_day * line.days)


class _Collector:
    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def add(self, field: str, rule: str, message: str) -> None:
        self.violations.append(Violation(field, rule, message))


def check_patient(p: Patient, today: date, out: _Collector) -> None:
    f = "draft.patient"
    ident = p.identifier
    if ident is None:
        out.add(f"{f}.identifier", "PATIENT_ID_REQUIRED", "a citizen ID, health ID or passport is required")
    elif ident.kind == "citizen_id" and not CCCD.match(ident.value):
        out.add(f"{f}.identifier.citizen_id", "CITIZEN_ID_FORMAT", "a citizen ID (CCCD) is 12 digits")
    elif ident.kind == "health_id" and not HEALTH_ID.match(ident.value):
        out.add(f"{f}.identifier.health_id", "HEALTH_ID_FORMAT", "a health ID is 8 to 20 letters or digits")
    elif ident.kind == "passport" and not PASSPORT.match(ident.value):
        out.add(f"{f}.identifier.passport", "PASSPORT_FORMAT", "a passport number is 6 to 12 letters or digits")
    if len(p.name.strip()) < 2:
        out.add(f"{f}.name", "PATIENT_NAME_REQUIRED", "the patient's full name is required")
    if p.date_of_birth is None:
        out.add(f"{f}.date_of_birth", "DATE_OF_BIRTH_REQUIRED", "a valid date of birth is required")
    elif p.date_of_birth > today:
        out.add(f"{f}.date_of_birth", "DATE_OF_BIRTH_FUTURE", "the date of birth is after the issue date")
    elif today.year - p.date_of_birth.year > 150:
        out.add(f"{f}.date_of_birth", "DATE_OF_BIRTH_IMPLAUSIBLE", "the date of birth is more than 150 years ago")
    if p.sex is None:
        out.add(f"{f}.sex", "SEX_REQUIRED", "sex is required (male, female or unknown)")
    if not p.address.strip():
        out.add(f"{f}.address", "ADDRESS_REQUIRED", "the patient's address is required")
    if p.bhyt_card and not BHYT_CARD.match(p.bhyt_card):
        out.add(f"{f}.bhyt_card", "BHYT_CARD_FORMAT",
                "a BHYT card code is 15 characters: 2 letters, benefit digit 1-5, 2-digit province, 10 digits")
    if p.date_of_birth is not None and p.date_of_birth <= today:
        months = months_between(p.date_of_birth, today)
        if months < CHILD_MONTHS:
            if p.age_in_months != months:
                out.add(f"{f}.age_in_months", "CHILD_AGE_IN_MONTHS",
                        f"a child under 72 months needs age in months ({months} on {today.isoformat()})")
            if not 0 < p.weight_grams <= 40_000:
                out.add(f"{f}.weight_grams", "CHILD_WEIGHT_REQUIRED", "a child under 72 months needs a weight")
            if p.guardian is None or len(p.guardian.name.strip()) < 2 or p.guardian.identifier is None:
                out.add(f"{f}.guardian", "CHILD_GUARDIAN_REQUIRED",
                        "a child under 72 months needs the accompanying adult's name and ID")


def check_diagnoses(draft: Draft, icd_valid: IcdCheck, out: _Collector) -> None:
    if not draft.diagnoses:
        out.add("draft.diagnoses", "DIAGNOSIS_REQUIRED", "at least one ICD-10 diagnosis is required")
    for i, d in enumerate(draft.diagnoses):
        if not icd_valid(icd10.normalize(d.icd10)):
            out.add(f"draft.diagnoses[{i}].icd10", "ICD10_UNKNOWN", f"{d.icd10!r} is not a WHO ICD-10 code")
        if not d.text.strip():
            out.add(f"draft.diagnoses[{i}].text", "DIAGNOSIS_TEXT_REQUIRED", "each diagnosis needs its text")


def check_prescriber(draft: Draft, ref: ReferenceData, out: _Collector) -> None:
    f = "draft.prescriber"
    p = draft.prescriber
    registered = ref.prescribers.get(p.certificate_number.strip())
    if registered is None:
        out.add(f"{f}.certificate_number", "PRESCRIBER_NOT_REGISTERED",
                "no registered prescriber has this practising certificate")
        return
    if p.linkage_code.strip() != registered.linkage_code:
        out.add(f"{f}.linkage_code", "PRESCRIBER_LINKAGE_MISMATCH",
                "the national linkage code does not match the registered prescriber")
    if p.facility_code.lower() != registered.facility_code.lower():
        out.add(f"{f}.facility_code", "PRESCRIBER_FACILITY_MISMATCH",
                f"the prescriber is registered at facility {registered.facility_code}")


def resolve_lines(draft: Draft, ref: ReferenceData, out: _Collector) -> list[tuple[int, Line, Drug]]:
    resolved = []
    if not draft.lines:
        out.add("draft.lines", "LINES_REQUIRED", "a prescription needs at least one drug line")
    if len(draft.lines) > MAX_LINES:
        out.add("draft.lines", "TOO_MANY_LINES", f"at most {MAX_LINES} lines")
    numbers = [line.line_number for line in draft.lines]
    if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
        out.add("draft.lines", "LINE_NUMBERS", "line numbers must be unique and start at 1")
    for i, line in enumerate(draft.lines):
        f = f"draft.lines[{i}]"
        drug = ref.drugs.get(line.drug_code)
        if drug is None:
            out.add(f"{f}.drug_code", "DRUG_UNKNOWN", f"{line.drug_code!r} is not in the formulary")
        if line.quantity <= 0:
            out.add(f"{f}.quantity", "QUANTITY_POSITIVE", "quantity must be at least 1")
        if parse_dose(line.dose) is None:
            out.add(f"{f}.dose_per_administration", "DOSE_FORMAT",
                    "dose per administration is a positive decimal of at most 4 digits and 3 decimals, e.g. 1 or 0.5")
        if not 1 <= line.per_day <= 24:
            out.add(f"{f}.administrations_per_day", "ADMINISTRATIONS_PER_DAY", "must be between 1 and 24")
        if not 1 <= line.days <= 366:
            out.add(f"{f}.days", "DAYS_RANGE", "days must be between 1 and 366")
        if not line.directions.strip():
            out.add(f"{f}.directions", "DIRECTIONS_REQUIRED", "each line needs directions for use")
        if line.not_available:
            if not line.not_available_reason.strip():
                out.add(f"{f}.not_available_reason", "NOT_AVAILABLE_REASON_REQUIRED",
                        "say why the facility cannot supply the drug (tender pending or failed, no substitute with "
                        "the same active ingredient, no transfer, nothing to borrow)")
            if drug is not None and not drug.bhyt_covered:
                out.add(f"{f}.not_available_at_facility", "NOT_ON_BHYT_LIST",
                        "only a drug on the BHYT list can be reimbursed when the facility cannot supply it")
        if drug is not None:
            resolved.append((i, line, drug))
            needed = required_quantity(line)
            if (drug.unit in COUNTABLE_UNITS and needed is not None and 1 <= line.per_day <= 24
                    and line.days >= 1 and line.quantity > 0 and line.quantity != needed):
                out.add(f"{f}.quantity", "QUANTITY_INCONSISTENT",
                        f"dose {line.dose} x {line.per_day} a day x {line.days} days is {needed} {drug.unit}, "
                        f"not {line.quantity}")
    return resolved


def check_type(draft: Draft, lines: list[tuple[int, Line, Drug]], out: _Collector) -> None:
    if draft.type is None:
        out.add("draft.type", "TYPE_REQUIRED", "the prescription type (c, n, h or y) is required")
        return
    for i, line, drug in lines:
        f = f"draft.lines[{i}].drug_code"
        controlled = drug.controlled
        if draft.type is RxType.NARCOTIC and controlled is not ControlledClass.NARCOTIC:
            out.add(f, "TYPE_MIXING", f"{drug.name} is not a narcotic: narcotic prescriptions hold narcotics only")
        elif draft.type is RxType.PSYCHOTROPIC and controlled not in (ControlledClass.PSYCHOTROPIC,
                                                                      ControlledClass.PRECURSOR):
            out.add(f, "TYPE_MIXING", f"{drug.name} is not psychotropic or a precursor: "
                                      "an 'h' prescription holds those only")
        elif draft.type is RxType.ORDINARY and controlled is not ControlledClass.NONE:
            out.add(f, "TYPE_MIXING", f"{drug.name} is {controlled.value}: it needs its own "
                                      f"{'n' if controlled is ControlledClass.NARCOTIC else 'h'} prescription")
        elif draft.type is RxType.TRADITIONAL and not drug.traditional:
            out.add(f, "TYPE_MIXING", f"{drug.name} is not a traditional medicine: a 'y' prescription holds those only")
    if draft.cancer_or_aids_pain and draft.type is not RxType.NARCOTIC:
        out.add("draft.cancer_or_aids_pain", "FLAG_NOT_APPLICABLE", "applies to narcotic prescriptions only")
    if draft.toxic_herbs and draft.type is not RxType.TRADITIONAL:
        out.add("draft.toxic_herbs", "FLAG_NOT_APPLICABLE", "applies to traditional prescriptions only")


def is_chronic(draft: Draft, ref: ReferenceData) -> bool:
    return any(r.contains(icd10.normalize(d.icd10)) for d in draft.diagnoses for r in ref.chronic)


def max_days_for(draft: Draft, lines: list[tuple[int, Line, Drug]], ref: ReferenceData, today: date) -> tuple[int, str]:
    """The days-of-supply limit of this prescription and the case it falls under."""
    limits = ref.limits_on(today)
    if draft.type is RxType.NARCOTIC:
        if draft.cancer_or_aids_pain:
            return limits["narcotic_cancer_batch"], "narcotic, cancer or AIDS pain (per batch)"
        return limits["narcotic_acute"], "narcotic, acute pain"
    if draft.type is RxType.PSYCHOTROPIC:
        if draft.acute:
            return limits["psychotropic_acute"], "psychotropic or precursor, acute"
        return limits["psychotropic_chronic"], "psychotropic or precursor, chronic"
    if draft.type is RxType.TRADITIONAL:
        if draft.acute or draft.toxic_herbs or any(d.toxic_herb for _, _, d in lines):
            return limits["traditional_toxic_or_acute"], "traditional, toxic herbs or acute"
        return limits["traditional"], "traditional"
    if is_chronic(draft, ref):
        return limits["chronic"], "a diagnosis on the chronic-disease list"
    return limits["ordinary"], "ordinary drugs"


def check_batches(draft: Draft, lines: list[tuple[int, Line, Drug]], ref: ReferenceData, today: date,
                  out: _Collector) -> dict[int, Batch]:
    limits = ref.limits_on(today)
    batches = {b.number: b for b in draft.batches}
    if not (draft.type is RxType.NARCOTIC and draft.cancer_or_aids_pain):
        if draft.batches:
            out.add("draft.batches", "BATCHES_NOT_APPLICABLE",
                    "batches are for narcotic prescriptions for cancer or AIDS pain")
        return {}
    if not icd10.any_in((d.icd10 for d in draft.diagnoses), (icd10.CANCER, icd10.AIDS)):
        out.add("draft.diagnoses", "CANCER_OR_AIDS_DIAGNOSIS_REQUIRED",
                "cancer or AIDS pain needs a diagnosis in C00-C97 or B20-B24")
    if not 1 <= len(draft.batches) <= limits["narcotic_cancer_batches"]:
        out.add("draft.batches", "BATCH_COUNT", f"1 to {limits['narcotic_cancer_batches']} batches, each with dates")
        return batches
    if sorted(batches) != list(range(1, len(draft.batches) + 1)):
        out.add("draft.batches", "BATCH_NUMBERS", "batches are numbered 1, 2, 3 in order")
        return batches
    total, previous_end = 0, today - timedelta(days=1)
    for number in sorted(batches):
        b = batches[number]
        f = f"draft.batches[{number - 1}]"
        if b.start is None or b.end is None or b.end < b.start:
            out.add(f, "BATCH_DATES", "each batch needs a start and an end date, end not before start")
            continue
        length = (b.end - b.start).days + 1
        if length > limits["narcotic_cancer_batch"]:
            out.add(f, "BATCH_TOO_LONG", f"a batch covers at most {limits['narcotic_cancer_batch']} days, not {length}")
        if b.start <= previous_end:
            out.add(f"{f}.start", "BATCH_ORDER", "batches start on or after the issue date and do not overlap")
        previous_end = b.end
        total += length
    if total > limits["narcotic_cancer_total"]:
        out.add("draft.batches", "BATCHES_TOO_LONG",
                f"batches cover at most {limits['narcotic_cancer_total']} days in all, not {total}")
    for i, line, _ in lines:
        batch = batches.get(line.batch_number)
        if batch is None:
            out.add(f"draft.lines[{i}].batch_number", "BATCH_UNKNOWN", "each line names the batch it belongs to")
        elif batch.start and batch.end and line.days > (batch.end - batch.start).days + 1:
            out.add(f"draft.lines[{i}].days", "LINE_LONGER_THAN_BATCH", "a line's days fit inside its batch")
    return batches


def validate_draft(draft: Draft, ref: ReferenceData, *, caller_facility: str, today: date,
                   icd_valid: IcdCheck, supplied_days: dict[str, int] | None = None) -> list[Violation]:
    """Every violation of the issue rules, empty when the draft may be issued. `supplied_days`
    (drug code -> days) is what a replaced code already supplied when the replacement is a new
    supply: the days-of-supply limits count it."""
    supplied_days = supplied_days or {}
    out = _Collector()
    facility = ref.facilities.get(caller_facility.lower())
    if facility is None:
        out.add("draft.prescriber.facility_code", "FACILITY_UNKNOWN", f"facility {caller_facility} is not registered")
    if draft.prescriber.facility_code.lower() != caller_facility.lower():
        out.add("draft.prescriber.facility_code", "FACILITY_NOT_CALLER",
                f"the prescription must be issued by the calling facility {caller_facility}")
    check_patient(draft.patient, today, out)
    check_diagnoses(draft, icd_valid, out)
    check_prescriber(draft, ref, out)
    lines = resolve_lines(draft, ref, out)
    check_type(draft, lines, out)
    if draft.type is RxType.NARCOTIC and facility is not None and not facility.has_inpatient_beds:
        out.add("draft.type", "NARCOTIC_NEEDS_INPATIENT_FACILITY",
                "narcotic prescriptions are issued only by facilities with inpatient beds")
    if draft.type is not None:
        check_batches(draft, lines, ref, today, out)
        limit, case = max_days_for(draft, lines, ref, today)
        for i, line, _ in lines:
            before = supplied_days.get(line.drug_code, 0)
            if line.days + before > limit:
                already = f" with the {before} days the replaced prescription already supplied" if before else ""
                out.add(f"draft.lines[{i}].days", "DAYS_OVER_LIMIT",
                        f"{line.days} days{already} exceeds the {limit}-day limit for {case}")
    if draft.return_visit_days < 0:
        out.add("draft.return_visit_days", "RETURN_VISIT_DAYS", "must not be negative")
    return out.violations


def valid_until(draft: Draft, ref: ReferenceData, issued_on: date) -> date:
    """The last day a sale may happen: the first-dispense window, or for narcotic batches the
    last batch's end (each line is further bound to its own batch's dates)."""
    if draft.batches and draft.type is RxType.NARCOTIC:
        ends = [b.end for b in draft.batches if b.end is not None]
        if ends:
            return max(ends)
    return issued_on + timedelta(days=ref.window_days_on(issued_on) - 1)


def days_supplied(lines: tuple[Line, ...], dispensed: dict[int, int]) -> dict[str, int]:
    """Days of supply that `dispensed` (line -> quantity) gave, per drug, at each line's dose
    (whole days, rounded up); lines without a usable dose count their prescribed days."""
    out: dict[str, int] = {}
    for line in lines:
        sold = dispensed.get(line.line_number, 0)
        if not sold:
            continue
        dose = parse_dose(line.dose)
        per_day = dose * line.per_day if dose else 0
        days = math.ceil(Decimal(sold) / per_day) if per_day else line.days
        out[line.drug_code] = out.get(line.drug_code, 0) + int(days)
    return out


def daily_mg(line: Line, drug: Drug) -> dict[str, Decimal]:
    dose = parse_dose(line.dose)
    if dose is None:
        return {}
    return {i.name: dose * line.per_day * i.mg_per_unit for i in drug.ingredients if i.mg_per_unit is not None}
