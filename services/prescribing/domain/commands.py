"""What a hospital asks of the prescribing service, as the gRPC adapter hands it over.
`fingerprint` identifies the request as sent: the same retry has the same one."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.kernel.protected import Reader
from services.prescribing.domain.model import Draft, PatientId


@dataclass(frozen=True)
class IssuePrescription:
    facility: str
    request_id: str
    draft: Draft | None
    override_reason: str
    fingerprint: str


@dataclass(frozen=True)
class ReplacePrescription:
    facility: str
    request_id: str
    code: str
    draft: Draft | None
    reason: str
    override_reason: str
    fingerprint: str
    new_supply: bool = False          # the replacement's quantities are a new supply (not deducted)


@dataclass(frozen=True)
class CancelPrescription:
    facility: str
    code: str
    reason: str


@dataclass(frozen=True)
class GetPrescription:
    code: str
    facility: str | None              # the caller's facility, if a facility asks
    reader: Reader | None = None      # who reads, for what (the HIV rule)


@dataclass(frozen=True)
class ListPatientMedications:
    patient: PatientId | None
    as_of: date | None
    as_of_given: bool = False         # a date was sent (None then means it was not a date)
    reader: Reader | None = None
