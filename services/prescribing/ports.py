"""What the prescribing handlers need from the world. The Redis adapter and the in-memory
one in tests/support pass the same contract tests (tests/contract/test_prescribing_store.py)."""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from services.prescribing.domain.events import Event
from services.prescribing.domain.model import (ActiveMedication, Issued, NewPrescription, Prescription,
                                               StoredPrescription)
from services.prescribing.domain.outcomes import Duplicate, Outcome


class PrescriptionStore(Protocol):
    """Prescriptions, the answers kept for client request ids, the outbox, and the patients'
    medication lists.

    `issue` stores a new prescription with its answer and appends its events atomically: a
    request id used before answers Duplicate (with the first fingerprint and answer) and a
    code already taken answers Collision, each writing nothing. `replace` also marks the old
    prescription replaced, and refuses (Missing, InState) unless it is active and not
    completed. `cancel` answers AlreadyCancelled, without events, the second time."""

    async def issue(self, *, facility: str, request_id: str, fingerprint: str, issued: Issued,
                    records: list[Event]) -> Outcome: ...

    async def replace(self, *, facility: str, request_id: str, fingerprint: str, old_code: str, issued: Issued,
                      records: list[Event]) -> Outcome: ...

    async def cancel(self, *, code: str, reason: str, records: list[Event]) -> Outcome: ...

    async def prior(self, facility: str, request_id: str) -> Duplicate | None: ...

    async def get(self, code: str) -> StoredPrescription | None: ...

    async def apply_dispense(self, *, event_id: str, code: str, sign: int, lines: list[tuple[int, int]]) -> str:
        """'applied', 'seen' when this event id was applied before, 'missing' for an unknown code."""

    async def close_dispensing(self, code: str, dispensed: dict[int, int]) -> bool:
        """Records the pharmacies' final count under a closed code; False for an unknown code."""

    async def put_medications(self, patient_key: str, meds: list[ActiveMedication], version: int,
                              now: datetime | None = None) -> None:
        """Writes each entry unless the list already holds it at a newer version."""

    async def medications(self, patient_key: str) -> list[ActiveMedication]: ...


class Signer(Protocol):
    """Builds the signed original of a new prescription with its prescriber's key."""

    def sign(self, new: NewPrescription) -> Prescription: ...
