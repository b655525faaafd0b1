"""The prescription store in memory: the same contract as the Redis one (see
tests/contract/test_prescribing_store.py), for handler tests without Redis or Kafka."""
from __future__ import annotations

from dataclasses import replace

from services.prescribing.domain.model import Issued, StoredPrescription
from services.prescribing.domain.outcomes import AlreadyCancelled, Collision, Done, Duplicate, InState, Missing


class MemoryPrescriptionStore:
    def __init__(self) -> None:
        self.prescriptions: dict[str, StoredPrescription] = {}
        self.requests: dict[tuple[str, str], Duplicate] = {}
        self.applied: dict[str, set[str]] = {}
        self.lists: dict[str, dict[str, tuple[int, object]]] = {}
        self.outbox: list = []

    def _refusal(self, code: str):
        stored = self.prescriptions.get(code)
        if stored is None:
            return Missing()
        if stored.recorded_status != "active":
            return InState(stored.recorded_status)
        if all(stored.dispensed.get(n, 0) >= q for n, q in stored.prescribed.items()):
            return InState("completed")
        return None

    def _create(self, facility: str, request_id: str, fingerprint: str, issued: Issued) -> None:
        self.prescriptions[issued.prescription.code] = StoredPrescription(issued.prescription, "active", "", {}, 1)
        self.requests[(facility.lower(), request_id)] = Duplicate(fingerprint, issued)

    async def issue(self, *, facility, request_id, fingerprint, issued, records):
        prior = self.requests.get((facility.lower(), request_id))
        if prior is not None:
            return prior
        if issued.prescription.code in self.prescriptions:
            return Collision()
        self._create(facility, request_id, fingerprint, issued)
        self.outbox.extend(records)
        return Done()

    async def replace(self, *, facility, request_id, fingerprint, old_code, issued, records):
        refused = self.requests.get((facility.lower(), request_id)) or self._refusal(old_code)
        if refused is not None:
            return refused
        if issued.prescription.code in self.prescriptions:
            return Collision()
        old = self.prescriptions[old_code]
        self.prescriptions[old_code] = replace(old, recorded_status="replaced", replaced_by=issued.prescription.code,
                                               version=old.version + 1)
        self._create(facility, request_id, fingerprint, issued)
        self.outbox.extend(records)
        return Done()

    async def cancel(self, *, code, reason, records):
        stored = self.prescriptions.get(code)
        if stored is not None and stored.recorded_status == "cancelled":
            return AlreadyCancelled()
        refused = self._refusal(code)
        if refused is not None:
            return refused
        self.prescriptions[code] = replace(stored, recorded_status="cancelled", version=stored.version + 1)
        self.outbox.extend(records)
        return Done()

    async def prior(self, facility, request_id):
        return self.requests.get((facility.lower(), request_id))

    async def get(self, code):
        return self.prescriptions.get(code)

    async def apply_dispense(self, *, event_id, code, sign, lines):
        stored = self.prescriptions.get(code)
        if stored is None:
            return "missing"
        seen = self.applied.setdefault(code, set())
        if event_id in seen:
            return "seen"
        seen.add(event_id)
        dispensed = dict(stored.dispensed)
        for line, quantity in lines:
            dispensed[line] = dispensed.get(line, 0) + sign * quantity
        self.prescriptions[code] = replace(stored, dispensed=dispensed, version=stored.version + 1)
        return "applied"

    async def close_dispensing(self, code, dispensed):
        stored = self.prescriptions.get(code)
        if stored is None:
            return False
        self.prescriptions[code] = replace(stored, closed_dispensed=dict(dispensed))
        return True

    async def put_medications(self, patient_key, meds, version, now=None):
        entries = self.lists.setdefault(patient_key, {})
        for med in meds:
            field = f"{med.prescription_code}#{med.line_number}"
            if entries.get(field, (0, None))[0] <= version:
                entries[field] = (version, med)

    async def medications(self, patient_key):
        return sorted((med for _, med in self.lists.get(patient_key, {}).values()),
                      key=lambda m: (m.start, m.prescription_code, m.line_number))
