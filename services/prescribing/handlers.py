"""One function per command and per event: validate with the domain, write through the
store (state and events in one atomic step), map nothing to the wire (grpc_api does)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from services.common import dates, privacy, signatures
from services.common.auth import Caller
from services.common.events import new_envelope, payload_of, to_record
from services.common.topics import PRESCRIPTIONS
from services.prescribing.adapters import mapping
from services.prescribing.adapters.redis_store import RedisPrescriptionStore, StoredPrescription
from services.kernel import status as rx_status
from services.prescribing.domain import codes, rules, safety, status
from services.prescribing.domain.model import (ActiveMedication, Draft, DraftRejected, InvalidState, Line, NotFound,
                                               NotPermitted, ReferenceData, RequestConflict, SafetyBlocked, Status,
                                               Violation)

log = structlog.get_logger("prescribing")
PRODUCER = "prescribing"
CODE_ATTEMPTS = 8
MAX_REQUEST_ID = 128


@dataclass(frozen=True)
class Dependencies:
    store: RedisPrescriptionStore
    ref: ReferenceData
    signing_keys: dict[str, Ed25519PrivateKey]
    clock: Callable[[], datetime]
    icd_valid: Callable[[str], bool]


def fingerprint(request) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def _require(field: str, ok: bool, rule: str, message: str) -> None:
    if not ok:
        raise DraftRejected([Violation(field, rule, message)])


def _valid_code(field: str, value: str) -> str:
    code = codes.normalize(value)
    _require(field, codes.is_valid(code), "CODE_FORMAT",
             "a prescription code is 5 facility characters, 7 of [0-9a-z], '-' and c, n, h or y")
    return code


class Prescribing:
    def __init__(self, deps: Dependencies):
        self.deps = deps

    # Commands

    async def issue(self, request: prescribing_pb2.IssuePrescriptionRequest, caller: Caller,
                    correlation_id: str) -> prescribing_pb2.IssuePrescriptionResponse:
        self._check_request_id(request.client_request_id)
        _require("draft", request.HasField("draft"), "DRAFT_REQUIRED", "the prescription draft is required")
        replay = await self._replayed(caller.identity, request)
        if replay is not None:
            return prescribing_pb2.IssuePrescriptionResponse.FromString(replay)
        now = self.deps.clock()
        draft, findings = await self._judge(request.draft, request.override_reason, caller, now)
        for _ in range(CODE_ATTEMPTS):
            rx, valid_until = self._prescription(request.draft, draft, caller, now)
            response = prescribing_pb2.IssuePrescriptionResponse(
                prescription=rx, warnings=[mapping.finding_to_proto(f) for f in findings])
            event = events_pb2.PrescriptionIssued(prescription=rx, override_reason=request.override_reason)
            outcome = await self.deps.store.issue(
                facility=caller.identity, request_id=request.client_request_id, fingerprint=fingerprint(request),
                response=response.SerializeToString(), rx=rx, patient_key=draft.patient.identifier.key,
                valid_until=valid_until, records=[self._record(event, rx.code, correlation_id, now)])
            if outcome.result == "done":
                log.info("prescription.issued", code=rx.code, type=rx.type, lines=len(rx.lines),
                         warnings=len(findings), overridden=bool(request.override_reason))
                return response
            if outcome.result == "duplicate":
                return self._duplicate(outcome.detail.decode(), request, outcome.response,
                                       prescribing_pb2.IssuePrescriptionResponse)
            log.warning("prescription.code_collision", facility=caller.identity)
        raise RuntimeError("no free prescription code after several attempts")

    async def replace(self, request: prescribing_pb2.ReplacePrescriptionRequest, caller: Caller,
                      correlation_id: str) -> prescribing_pb2.ReplacePrescriptionResponse:
        self._check_request_id(request.client_request_id)
        old_code = _valid_code("code", request.code)
        _require("draft", request.HasField("draft"), "DRAFT_REQUIRED", "the replacement draft is required")
        _require("reason", bool(request.reason.strip()), "REASON_REQUIRED", "say why the prescription is replaced")
        replay = await self._replayed(caller.identity, request)
        if replay is not None:
            return prescribing_pb2.ReplacePrescriptionResponse.FromString(replay)
        now = self.deps.clock()
        old = await self._owned(old_code, caller)
        self._still_changeable(old, dates.local_day(now), "replaced")
        if request.draft.type != old.content.type:
            raise DraftRejected([Violation("draft.type", "TYPE_CHANGE",
                                           "a replacement keeps the type of the prescription it replaces")])
        draft, findings = await self._judge(request.draft, request.override_reason, caller, now,
                                            excluding=old_code)
        for _ in range(CODE_ATTEMPTS):
            rx, valid_until = self._prescription(request.draft, draft, caller, now, replaces=old_code)
            response = prescribing_pb2.ReplacePrescriptionResponse(
                prescription=rx, warnings=[mapping.finding_to_proto(f) for f in findings])
            replaced = events_pb2.PrescriptionReplaced(replaced_code=old_code, replacement=rx, reason=request.reason)
            issued = events_pb2.PrescriptionIssued(prescription=rx, override_reason=request.override_reason)
            outcome = await self.deps.store.replace(
                facility=caller.identity, request_id=request.client_request_id, fingerprint=fingerprint(request),
                response=response.SerializeToString(), old_code=old_code, rx=rx,
                patient_key=draft.patient.identifier.key, valid_until=valid_until,
                records=[self._record(replaced, old_code, correlation_id, now),
                         self._record(issued, rx.code, correlation_id, now)])
            if outcome.result == "done":
                log.info("prescription.replaced", code=old_code, replacement=rx.code)
                return response
            if outcome.result == "duplicate":
                return self._duplicate(outcome.detail.decode(), request, outcome.response,
                                       prescribing_pb2.ReplacePrescriptionResponse)
            if outcome.result == "state":
                raise InvalidState("NOT_REPLACEABLE", f"prescription {old_code} is {outcome.detail.decode()}")
            if outcome.result == "not_found":
                raise NotFound(f"no prescription {old_code}")
        raise RuntimeError("no free prescription code after several attempts")

    async def cancel(self, request: prescribing_pb2.CancelPrescriptionRequest, caller: Caller,
                     correlation_id: str) -> prescribing_pb2.CancelPrescriptionResponse:
        code = _valid_code("code", request.code)
        _require("reason", bool(request.reason.strip()), "REASON_REQUIRED", "say why the prescription is cancelled")
        now = self.deps.clock()
        stored = await self._owned(code, caller)
        if stored.recorded_status != Status.CANCELLED:
            self._still_changeable(stored, dates.local_day(now), "cancelled")
        event = events_pb2.PrescriptionCancelled(code=code, reason=request.reason, cancelled_by=caller.identity)
        outcome = await self.deps.store.cancel(code=code, reason=request.reason,
                                               records=[self._record(event, code, correlation_id, now)])
        if outcome.result == "state":
            raise InvalidState("NOT_CANCELLABLE", f"prescription {code} is {outcome.detail.decode()}")
        if outcome.result == "not_found":
            raise NotFound(f"no prescription {code}")
        if outcome.result == "done":
            log.info("prescription.cancelled", code=code)
        return prescribing_pb2.CancelPrescriptionResponse(
            status=mapping.status_to_proto(Status.CANCELLED))

    # Queries

    async def get(self, request: prescribing_pb2.GetPrescriptionRequest,
                  caller: Caller | None = None) -> prescribing_pb2.GetPrescriptionResponse:
        code = _valid_code("code", request.code)
        stored = await self.deps.store.get(code)
        if stored is None:
            raise NotFound(f"no prescription {code}")
        today = dates.local_day(self.deps.clock())
        current = rx_status.derive(stored.recorded_status, stored.prescribed, stored.dispensed, stored.valid_until, today)
        shown = stored.content
        if caller is None or caller.identity.lower() != stored.content.facility_code.lower():
            shown, _ = privacy.masked(stored.content)  # only the issuing facility sees an HIV patient's identity
        return prescribing_pb2.GetPrescriptionResponse(
            prescription=shown, status=mapping.status_to_proto(current), replaced_by=stored.replaced_by,
            lines=[prescribing_pb2.LineProgress(line_number=n, prescribed=q, dispensed=stored.dispensed.get(n, 0))
                   for n, q in sorted(stored.prescribed.items())])

    async def medications(self, request: prescribing_pb2.ListPatientMedicationsRequest
                          ) -> prescribing_pb2.ListPatientMedicationsResponse:
        pid = mapping.patient_id(request.patient)
        _require("patient", pid is not None, "PATIENT_ID_REQUIRED", "a citizen ID, health ID or passport is required")
        as_of = dates.from_proto(request.as_of) if request.HasField("as_of") else None
        _require("as_of", not request.HasField("as_of") or as_of is not None, "DATE_FORMAT", "not a calendar date")
        today = as_of or dates.local_day(self.deps.clock())
        reply = prescribing_pb2.ListPatientMedicationsResponse()
        for med in await self.deps.store.medications(pid.key):
            current = self._med_status(med, today)
            left = status.remaining_days(med.start, med.days, today)
            if current in (Status.CANCELLED, Status.REPLACED, Status.EXPIRED) or left == 0:
                continue
            drug = self.deps.ref.drugs.get(med.drug_code)
            reply.medications.add(
                prescription_code=med.prescription_code, facility_code=med.facility_code, drug_code=med.drug_code,
                drug_name=drug.name if drug else med.drug_code, active_ingredient=" + ".join(med.ingredients),
                prescribed=med.prescribed, dispensed=med.dispensed, remaining_days=left,
                status=mapping.status_to_proto(current))
        return reply

    # Events (the projections of the read models)

    async def on_event(self, envelope: events_pb2.EventEnvelope) -> None:
        kind = envelope.WhichOneof("payload")
        payload = payload_of(envelope)
        if kind == "prescription_issued":
            await self.refresh_medications(payload.prescription.code)
        elif kind == "prescription_replaced":
            await self.refresh_medications(payload.replaced_code)
        elif kind == "prescription_cancelled":
            await self.refresh_medications(payload.code)
        elif kind in ("medication_dispensed", "dispense_reversed"):
            sign = 1 if kind == "medication_dispensed" else -1
            applied = await self.deps.store.apply_dispense(
                event_id=envelope.event_id, code=payload.prescription_code, sign=sign,
                lines=[(line.line_number, line.quantity) for line in payload.lines])
            if applied < 0:
                raise ValueError(f"dispense {payload.dispense_id} names unknown prescription "
                                 f"{payload.prescription_code}")
            await self.refresh_medications(payload.prescription_code)

    async def refresh_medications(self, code: str) -> None:
        """Rewrites the patient's entries for one prescription from its stored state:
        idempotent, and the same whatever order the topics were read in."""
        stored = await self.deps.store.get(code)
        if stored is None:
            raise ValueError(f"event for unknown prescription {code}")
        await self.deps.store.put_medications(stored.patient_key, self._entries(stored), stored.version)

    # Helpers

    def _entries(self, stored: StoredPrescription) -> list[ActiveMedication]:
        rx = stored.content
        issued_on = dates.local_day(rx.issued_at.ToDatetime(tzinfo=timezone.utc))
        entries = []
        for line in rx.lines:
            drug = self.deps.ref.drugs.get(line.drug_code)
            daily = rules.daily_mg(_line_of(line), drug) if drug else {}
            entries.append(ActiveMedication(
                prescription_code=rx.code, line_number=line.line_number, facility_code=rx.facility_code,
                prescriber=rx.prescriber.certificate_number, drug_code=line.drug_code,
                ingredients=drug.ingredient_names if drug else (), atc=drug.atc if drug else "", daily_mg=daily,
                start=issued_on, days=line.days, prescribed=line.quantity,
                dispensed=stored.dispensed.get(line.line_number, 0), status=Status(stored.recorded_status),
                valid_until=stored.valid_until))
        return entries

    def _med_status(self, med: ActiveMedication, today: date) -> Status:
        return rx_status.derive(med.status, {med.line_number: med.prescribed}, {med.line_number: med.dispensed},
                                med.valid_until, today)

    async def _judge(self, msg, override_reason: str, caller: Caller, now: datetime,
                     excluding: str = "") -> tuple[Draft, list]:
        today = dates.local_day(now)
        draft = mapping.draft(msg)
        violations = rules.validate_draft(draft, self.deps.ref, caller_facility=caller.identity, today=today,
                                          icd_valid=self.deps.icd_valid)
        if violations:
            raise DraftRejected(violations)
        active = [m for m in await self.deps.store.medications(draft.patient.identifier.key)
                  if m.prescription_code != excluding]
        lines = [(line, self.deps.ref.drugs[line.drug_code]) for line in draft.lines]
        findings = safety.check(lines, active, draft.patient.allergies, self.deps.ref, today)
        blocking = safety.blocking(findings)
        if blocking and not override_reason.strip():
            raise SafetyBlocked(blocking)
        return draft, findings

    def _prescription(self, msg, draft: Draft, caller: Caller, now: datetime, replaces: str = ""):
        today = dates.local_day(now)
        registered = self.deps.ref.prescribers[draft.prescriber.certificate_number.strip()]
        code = codes.new_code(caller.identity, draft.type)
        valid_until = rules.valid_until(draft, self.deps.ref, today)
        rx = mapping.prescription(msg, draft, code=code, facility_code=caller.identity, drugs=self.deps.ref.drugs,
                                  issued_at=now, valid_until=valid_until, prescriber_name=registered.name,
                                  replaces_code=replaces)
        signatures.sign(rx, registered.key_id, self.deps.signing_keys[registered.key_id])
        return rx, valid_until

    def _record(self, payload, key: str, correlation_id: str, now: datetime):
        return to_record(new_envelope(payload, key=key, producer=PRODUCER, correlation_id=correlation_id,
                                      occurred_at=now), PRESCRIPTIONS)

    @staticmethod
    def _check_request_id(request_id: str) -> None:
        _require("client_request_id", 0 < len(request_id) <= MAX_REQUEST_ID and request_id.isprintable(),
                 "REQUEST_ID_REQUIRED", f"a client request id of 1 to {MAX_REQUEST_ID} printable characters")

    async def _replayed(self, facility: str, request) -> bytes | None:
        prior = await self.deps.store.prior(facility, request.client_request_id)
        if prior is None:
            return None
        if prior[0] != fingerprint(request):
            raise RequestConflict(f"client request id {request.client_request_id!r} was used for another request")
        return prior[1]

    @staticmethod
    def _duplicate(prior_fp: str, request, response: bytes, cls):
        if prior_fp != fingerprint(request):
            raise RequestConflict(f"client request id {request.client_request_id!r} was used for another request")
        return cls.FromString(response)

    async def _owned(self, code: str, caller: Caller) -> StoredPrescription:
        stored = await self.deps.store.get(code)
        if stored is None:
            raise NotFound(f"no prescription {code}")
        if stored.content.facility_code.lower() != caller.identity.lower():
            raise NotPermitted("NOT_ISSUING_FACILITY",
                               f"only the issuing facility {stored.content.facility_code} may change {code}")
        return stored

    def _still_changeable(self, stored: StoredPrescription, today: date, verb: str) -> None:
        current = rx_status.derive(stored.recorded_status, stored.prescribed, stored.dispensed, stored.valid_until,
                                today)
        if current in (Status.CANCELLED, Status.REPLACED, Status.COMPLETED, Status.EXPIRED):
            raise InvalidState("NOT_CHANGEABLE",
                               f"prescription {stored.content.code} is {current.value} and cannot be {verb}")


def _line_of(line: common_pb2.PrescriptionLine) -> Line:
    return Line(line.line_number, line.drug_code, line.quantity, line.dose_per_administration,
                line.administrations_per_day, line.days, line.directions, line.batch_number)
