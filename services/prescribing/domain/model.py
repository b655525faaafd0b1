"""The prescribing domain's values: pure dataclasses, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum

from services.kernel.dated import in_force
from services.kernel.icd10 import IcdRange
from services.kernel.status import Status, derive
from services.kernel.drugs import Drug


class RxType(StrEnum):
    ORDINARY = "c"
    NARCOTIC = "n"
    PSYCHOTROPIC = "h"  # psychotropic or precursor
    TRADITIONAL = "y"


class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


class Severity(IntEnum):
    INFO = 1
    MODERATE = 2
    MAJOR = 3
    CONTRAINDICATED = 4  # blocks issue unless the prescriber gives an override reason


_ID_PREFIX = {"citizen_id": "cccd", "health_id": "hid", "passport": "pp"}


@dataclass(frozen=True)
class PatientId:
    kind: str   # citizen_id | health_id | passport
    value: str

    @property
    def key(self) -> str:
        """The platform's patient key, e.g. 'cccd:001203004567'."""
        return f"{_ID_PREFIX[self.kind]}:{self.value}"


@dataclass(frozen=True)
class Guardian:
    name: str
    identifier: PatientId | None
    relationship: str


@dataclass(frozen=True)
class Patient:
    identifier: PatientId | None
    name: str
    date_of_birth: date | None
    sex: Sex | None
    address: str
    bhyt_card: str
    age_in_months: int
    weight_grams: int
    guardian: Guardian | None
    allergies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    icd10: str
    text: str


@dataclass(frozen=True)
class PrescriberRef:
    certificate_number: str
    linkage_code: str
    name: str
    facility_code: str


@dataclass(frozen=True)
class Batch:
    number: int
    start: date | None
    end: date | None


@dataclass(frozen=True)
class Line:
    line_number: int
    drug_code: str
    quantity: int
    dose: str               # units per administration, as decimal text
    per_day: int
    days: int
    directions: str
    batch_number: int = 0
    not_available: bool = False      # the facility cannot supply it (Circular 22/2024 art. 3): reimbursed at retail
    not_available_reason: str = ""


@dataclass(frozen=True)
class Draft:
    type: RxType | None
    patient: Patient
    diagnoses: tuple[Diagnosis, ...]
    prescriber: PrescriberRef
    lines: tuple[Line, ...]
    advice: str = ""
    return_visit_days: int = 0
    batches: tuple[Batch, ...] = ()
    cancer_or_aids_pain: bool = False
    acute: bool = False
    toxic_herbs: bool = False
    encounter: Encounter | None = None


@dataclass(frozen=True)
class Encounter:
    """The visit the prescription belongs to (`MA_LK`): the fund judges its 15% threshold on
    every in-scope cost of the visit, which only the hospital knows."""
    id: str
    other_costs_vnd: int              # in-scope examination, tests and other costs of the visit


@dataclass(frozen=True)
class Facility:
    code: str
    name: str
    province: str
    has_inpatient_beds: bool


@dataclass(frozen=True)
class RegisteredPrescriber:
    certificate_number: str
    linkage_code: str
    name: str
    facility_code: str
    key_id: str


@dataclass(frozen=True)
class Interaction:
    ingredients: frozenset[str]
    severity: Severity
    rationale: str


@dataclass(frozen=True)
class ReferenceData:
    version: str
    drugs: dict[str, Drug]
    interactions: dict[frozenset[str], Interaction]
    max_daily_mg: dict[str, Decimal]
    chronic: tuple[IcdRange, ...]
    facilities: dict[str, Facility]
    prescribers: dict[str, RegisteredPrescriber]            # by certificate number
    supply_limits: tuple[tuple[date, dict[str, int]], ...]   # (effective_from, case -> max days), oldest first
    dispensing_windows: tuple[tuple[date, int], ...]          # (effective_from, first-dispense days)

    def limits_on(self, day: date) -> dict[str, int]:
        return in_force(self.supply_limits, day)

    def window_days_on(self, day: date) -> int:
        return in_force(self.dispensing_windows, day)


@dataclass(frozen=True)
class ActiveMedication:
    """One line of a prescription the patient has, from any facility (the read model)."""

    prescription_code: str
    line_number: int
    facility_code: str
    prescriber: str
    drug_code: str
    ingredients: tuple[str, ...]
    atc: str
    daily_mg: dict[str, Decimal]
    start: date
    days: int
    prescribed: int
    dispensed: int
    status: Status
    valid_until: date
    protected: bool = False          # an antiretroviral for a protected diagnosis: shown to few (kernel.protected)


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    drug_codes: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class Violation:
    field: str
    rule: str
    message: str


class PrescribingError(Exception):
    """Base of the domain's refusals; each maps to one gRPC status."""


class DraftRejected(PrescribingError):
    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))


class SafetyBlocked(PrescribingError):
    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("; ".join(f.message for f in findings))


class NotFound(PrescribingError):
    pass


class NotPermitted(PrescribingError):
    def __init__(self, rule: str, message: str):
        self.rule = rule
        super().__init__(message)


class InvalidState(PrescribingError):
    def __init__(self, rule: str, message: str):
        self.rule = rule
        super().__init__(message)


class RequestConflict(PrescribingError):
    """The same client request id was used before for a different request."""


@dataclass(frozen=True)
class NewPrescription:
    """A prescription about to be issued: the judged draft, completed from the registry and the
    formulary, with its code and dates. The document adapter turns it into the signed original."""
    code: str
    facility_code: str
    draft: Draft
    drugs: tuple[Drug, ...]          # the formulary entry of each line, in line order
    prescriber: RegisteredPrescriber
    issued_at: datetime
    valid_until: date
    replaces_code: str = ""
    new_supply: bool = False         # a replacement whose quantities are a new supply, not the whole treatment


@dataclass(frozen=True)
class Prescription:
    """An issued prescription as the rules read it; `document` is the signed original."""
    code: str
    type: RxType
    facility_code: str
    patient_key: str
    prescriber: str                   # certificate number
    diagnoses: tuple[str, ...]
    lines: tuple[Line, ...]
    issued_at: datetime
    valid_until: date
    document: bytes = field(repr=False, default=b"")

    @property
    def prescribed(self) -> dict[int, int]:
        return {line.line_number: line.quantity for line in self.lines}


@dataclass(frozen=True)
class StoredPrescription:
    prescription: Prescription
    recorded_status: str
    replaced_by: str
    dispensed: dict[int, int]
    version: int
    closed_dispensed: dict[int, int] | None = None   # the pharmacies' final count, once the code is closed

    @property
    def prescribed(self) -> dict[int, int]:
        return self.prescription.prescribed

    def progress(self) -> list[tuple[int, int, int]]:
        """(line, prescribed, dispensed): the pharmacies' final count once the code is closed,
        else the projection of the sales seen so far."""
        dispensed = self.closed_dispensed if self.closed_dispensed is not None else self.dispensed
        return [(n, q, dispensed.get(n, 0)) for n, q in sorted(self.prescribed.items())]

    def status_on(self, today: date) -> Status:
        return derive(self.recorded_status, self.prescribed, self.dispensed, self.prescription.valid_until, today)


@dataclass(frozen=True)
class Issued:
    """The answer to an issue or a replacement: kept with the client request id for retries."""
    prescription: Prescription
    warnings: tuple[Finding, ...]


@dataclass(frozen=True)
class PrescriptionView:
    stored: StoredPrescription
    status: Status
    identity_hidden: bool


@dataclass(frozen=True)
class MedicationEntry:
    medication: ActiveMedication
    drug_name: str
    status: Status
    remaining_days: int
