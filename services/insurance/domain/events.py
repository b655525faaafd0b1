"""What the insurer hears (claims, prescriptions) and what it says (outcomes, alerts)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.insurance.domain.adjudication import Adjudication, Claim
from services.insurance.domain.alerts import DoctorShopping
from services.insurance.domain.prescriptions import PrescriptionFacts

NAMESPACE = uuid.UUID("6f1c8f4e-7f0b-4b7e-9f39-3c2d6c7c9a10")


def derived_event_id(source_event_id: str, purpose: str) -> str:
    """Output event ids derive from input ids: a redelivered input yields the same output id,
    which every consumer de-duplicates."""
    return str(uuid.uuid5(NAMESPACE, f"{purpose}:{source_event_id}"))


@dataclass(frozen=True)
class AttachedPrescription:
    """A signed prescription a claim or a quote carries; trusted only when its signature verifies."""
    facts: PrescriptionFacts
    document: bytes

    @property
    def code(self) -> str:
        return self.facts.code


@dataclass(frozen=True)
class ClaimSubmitted:
    event_id: str
    claim: Claim
    quote_id: str
    attached: AttachedPrescription | None


@dataclass(frozen=True)
class ClaimReversalRequested:
    event_id: str
    claim_id: str
    member_id: str
    reason: str


@dataclass(frozen=True)
class PrescriptionIssued:
    event_id: str
    code: str
    controlled: bool                  # narcotic or psychotropic
    patient_key: str                  # empty when the prescription names no patient identifier
    prescriber: str
    issued_at: datetime
    facts: PrescriptionFacts


@dataclass(frozen=True)
class ClaimAdjudicated:
    event_id: str
    adjudication: Adjudication


@dataclass(frozen=True)
class DoctorShoppingAlert:
    alert_id: str
    patient_key: str
    found: DoctorShopping
    window_days: int
    occurred_at: datetime


Outgoing = ClaimAdjudicated | DoctorShoppingAlert
