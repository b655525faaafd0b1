"""One function per command, query and event: the domain judges, the store writes state and
events in one atomic step, and the gRPC adapter maps the results to the wire."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Awaitable, Callable

import structlog

from services.kernel import codes as national_codes
from services.kernel.calendar import local_day
from services.kernel.protected import DEFAULT as DEFAULT_PROTECTED, ProtectedHealth, Reader, may_know
from services.kernel.status import FINAL, Status
from services.prescribing.domain import codes, rules, safety, status
from services.prescribing.domain.commands import (CancelPrescription, GetPrescription, IssuePrescription,
                                                  ListPatientMedications, ReplacePrescription)
from services.prescribing.domain.events import (DispenseRecorded, DispensingClosed, PrescriptionCancelled,
                                                PrescriptionChanged, PrescriptionIssued, PrescriptionReplaced)
from services.prescribing.domain.model import (ActiveMedication, Draft, DraftRejected, InvalidState, Issued,
                                               MedicationEntry, NewPrescription, NotFound, NotPermitted,
                                               PrescriptionView, ReferenceData, RequestConflict, SafetyBlocked,
                                               StoredPrescription, Violation)
from services.prescribing.domain.outcomes import (AlreadyCancelled, Collision, Done, Duplicate, InState, Missing,
                                                  Outcome)
from services.prescribing.ports import PrescriptionStore, Signer

log = structlog.get_logger("prescribing")
CODE_ATTEMPTS = 8
MAX_REQUEST_ID = 128


@dataclass(frozen=True)
class Dependencies:
    store: PrescriptionStore
    ref: ReferenceData
    signer: Signer
    clock: Callable[[], datetime]
    icd_valid: Callable[[str], bool]
    protected: ProtectedHealth = DEFAULT_PROTECTED


def _require(field: str, ok: bool, rule: str, message: str) -> None:
    if not ok:
        raise DraftRejected([Violation(field, rule, message)])


def _valid_code(field: str, value: str) -> str:
    code = national_codes.normalize(value)
    _require(field, national_codes.is_valid(code), "CODE_FORMAT", national_codes.FORMAT)
    return code


def _check_request_id(request_id: str) -> None:
    _require("client_request_id", 0 < len(request_id) <= MAX_REQUEST_ID and request_id.isprintable(),
             "REQUEST_ID_REQUIRED", f"a client request id of 1 to {MAX_REQUEST_ID} printable characters")


def _answer(prior: Duplicate, command) -> Issued:
    """The first answer to a client request id, if this is the same request."""
    if prior.fingerprint != command.fingerprint or prior.issued is None:
        raise RequestConflict(f"client request id {command.request_id!r} was used for another request")
    return prior.issued


def _log_protected_read(reader: Reader | None, code: str, outcome: str) -> None:
    """Every read of a protected record, with who read it and why (never the patient)."""
    log.info("protected.read", code=code, reader_role=reader.role if reader else "", outcome=outcome,
             reader=reader.organisation if reader else "", purpose=reader.purpose if reader else "")


class Prescribing:
    def __init__(self, deps: Dependencies):
        self.deps = deps

    # Commands

    async def issue(self, command: IssuePrescription) -> Issued:
        _check_request_id(command.request_id)
        _require("draft", command.draft is not None, "DRAFT_REQUIRED", "the prescription draft is required")
        prior = await self.deps.store.prior(command.facility, command.request_id)
        if prior is not None:
            return _answer(prior, command)
        now = self.deps.clock()
        findings = await self._judge(command.draft, command.override_reason, command.facility, now)

        async def attempt() -> tuple[Outcome, Issued]:
            issued = Issued(self._sign(command.draft, command.facility, now), tuple(findings))
            return await self.deps.store.issue(
                facility=command.facility, request_id=command.request_id, fingerprint=command.fingerprint,
                issued=issued, records=[PrescriptionIssued(issued.prescription, command.override_reason, now)]), issued

        outcome, issued = await self._with_fresh_code(command.facility, attempt)
        if isinstance(outcome, Duplicate):
            return _answer(outcome, command)
        rx = issued.prescription
        log.info("prescription.issued", code=rx.code, type=rx.type.value, lines=len(rx.lines),
                 warnings=len(findings), overridden=bool(command.override_reason))
        return issued

    async def replace(self, command: ReplacePrescription) -> Issued:
        _check_request_id(command.request_id)
        old_code = _valid_code("code", command.code)
        _require("draft", command.draft is not None, "DRAFT_REQUIRED", "the replacement draft is required")
        _require("reason", bool(command.reason.strip()), "REASON_REQUIRED", "say why the prescription is replaced")
        prior = await self.deps.store.prior(command.facility, command.request_id)
        if prior is not None:
            return _answer(prior, command)
        now = self.deps.clock()
        old = await self._owned(old_code, command.facility)
        self._still_changeable(old, local_day(now), "replaced")
        if command.draft.type != old.prescription.type:
            raise DraftRejected([Violation("draft.type", "TYPE_CHANGE",
                                           "a replacement keeps the type of the prescription it replaces")])
        supplied = (rules.days_supplied(old.prescription.lines, old.closed_dispensed or old.dispensed)
                    if command.new_supply else {})
        findings = await self._judge(command.draft, command.override_reason, command.facility, now,
                                     excluding=old_code, supplied_days=supplied)

        async def attempt() -> tuple[Outcome, Issued]:
            issued = Issued(self._sign(command.draft, command.facility, now, replaces=old_code,
                                       new_supply=command.new_supply), tuple(findings))
            rx = issued.prescription
            return await self.deps.store.replace(
                facility=command.facility, request_id=command.request_id, fingerprint=command.fingerprint,
                old_code=old_code, issued=issued,
                records=[PrescriptionReplaced(old_code, rx, command.reason, now),
                         PrescriptionIssued(rx, command.override_reason, now)]), issued

        outcome, issued = await self._with_fresh_code(command.facility, attempt)
        match outcome:
            case Duplicate():
                return _answer(outcome, command)
            case InState(state):
                raise InvalidState("NOT_REPLACEABLE", f"prescription {old_code} is {state}")
            case Missing():
                raise NotFound(f"no prescription {old_code}")
        log.info("prescription.replaced", code=old_code, replacement=issued.prescription.code)
        return issued

    async def cancel(self, command: CancelPrescription) -> Status:
        code = _valid_code("code", command.code)
        _require("reason", bool(command.reason.strip()), "REASON_REQUIRED", "say why the prescription is cancelled")
        now = self.deps.clock()
        stored = await self._owned(code, command.facility)
        if stored.recorded_status != Status.CANCELLED:
            self._still_changeable(stored, local_day(now), "cancelled")
        event = PrescriptionCancelled(code, command.reason, command.facility, now)
        match await self.deps.store.cancel(code=code, reason=command.reason, records=[event]):
            case InState(state):
                raise InvalidState("NOT_CANCELLABLE", f"prescription {code} is {state}")
            case Missing():
                raise NotFound(f"no prescription {code}")
            case Done():
                log.info("prescription.cancelled", code=code)
            case AlreadyCancelled():
                pass
        return Status.CANCELLED

    # Queries

    async def get(self, query: GetPrescription) -> PrescriptionView:
        code = _valid_code("code", query.code)
        stored = await self.deps.store.get(code)
        if stored is None:
            raise NotFound(f"no prescription {code}")
        rx = stored.prescription
        hidden = False
        if self.deps.protected.protected_diagnosis(rx.diagnoses):
            hidden = not may_know(query.reader, rx.facility_code)
            _log_protected_read(query.reader, rx.code, "identity hidden" if hidden else "shown")
        return PrescriptionView(stored, stored.status_on(local_day(self.deps.clock())), hidden)

    async def medications(self, query: ListPatientMedications) -> list[MedicationEntry]:
        _require("patient", query.patient is not None, "PATIENT_ID_REQUIRED",
                 "a citizen ID, health ID or passport is required")
        _require("as_of", not query.as_of_given or query.as_of is not None, "DATE_FORMAT", "not a calendar date")
        today = query.as_of or local_day(self.deps.clock())
        entries = []
        for med in await self.deps.store.medications(query.patient.key):
            current = status.of_medication(med, today)
            left = status.remaining_days(med.start, med.days, today)
            if current in (Status.CANCELLED, Status.REPLACED, Status.EXPIRED) or left == 0:
                continue
            if med.protected:
                allowed = may_know(query.reader, med.facility_code)
                _log_protected_read(query.reader, med.prescription_code, "shown" if allowed else "withheld")
                if not allowed:
                    continue
            drug = self.deps.ref.drugs.get(med.drug_code)
            entries.append(MedicationEntry(med, drug.name if drug else med.drug_code, current, left))
        return entries

    # Events (the projections of the read models)

    async def on_prescription_changed(self, event: PrescriptionChanged) -> None:
        await self.refresh_medications(event.code)

    async def on_dispense(self, event: DispenseRecorded) -> None:
        applied = await self.deps.store.apply_dispense(event_id=event.event_id, code=event.code, sign=event.sign,
                                                       lines=list(event.lines))
        if applied == "missing":
            raise ValueError(f"dispense {event.dispense_id} names unknown prescription {event.code}")
        await self.refresh_medications(event.code)

    async def on_dispensing_closed(self, event: DispensingClosed) -> None:
        """The pharmacies' final count under a cancelled or replaced code (it counts what the
        codes it replaced dispensed), shown to the prescriber on GetPrescription."""
        if not await self.deps.store.close_dispensing(event.code, dict(event.lines)):
            raise ValueError(f"dispensing closed for unknown prescription {event.code}")

    async def progress(self, code: str) -> list[tuple[int, int, int]]:
        """(line, prescribed, dispensed) of the code as known now: the pharmacies' final count
        once it is closed (the replace and cancel answers say it)."""
        stored = await self.deps.store.get(_valid_code("code", code))
        return stored.progress() if stored is not None else []

    async def refresh_medications(self, code: str) -> None:
        """Rewrites the patient's entries for one prescription from its stored state:
        idempotent, and the same whatever order the topics were read in."""
        stored = await self.deps.store.get(code)
        if stored is None:
            raise ValueError(f"event for unknown prescription {code}")
        await self.deps.store.put_medications(stored.prescription.patient_key, self._entries(stored),
                                              stored.version, self.deps.clock())

    # Helpers

    @staticmethod
    async def _with_fresh_code(facility: str, attempt: Callable[[], Awaitable[tuple[Outcome, Issued]]]
                               ) -> tuple[Outcome, Issued]:
        """Codes are random: a code already taken (Collision) is drawn again, a few times."""
        for _ in range(CODE_ATTEMPTS):
            outcome, issued = await attempt()
            if not isinstance(outcome, Collision):
                return outcome, issued
            log.warning("prescription.code_collision", facility=facility)
        raise RuntimeError("no free prescription code after several attempts")

    def _entries(self, stored: StoredPrescription) -> list[ActiveMedication]:
        rx = stored.prescription
        issued_on = local_day(rx.issued_at)
        entries = []
        for line in rx.lines:
            drug = self.deps.ref.drugs.get(line.drug_code)
            entries.append(ActiveMedication(
                prescription_code=rx.code, line_number=line.line_number, facility_code=rx.facility_code,
                prescriber=rx.prescriber, drug_code=line.drug_code,
                ingredients=drug.ingredient_names if drug else (), atc=drug.atc if drug else "",
                daily_mg=rules.daily_mg(line, drug) if drug else {}, start=issued_on, days=line.days,
                prescribed=line.quantity, dispensed=stored.dispensed.get(line.line_number, 0),
                status=Status(stored.recorded_status), valid_until=rx.valid_until,
                protected=self.deps.protected.protected_line(drug.atc if drug else "", rx.diagnoses)))
        return entries

    async def _judge(self, draft: Draft, override_reason: str, facility: str, now: datetime,
                     excluding: str = "", supplied_days: dict[str, int] | None = None) -> list:
        today = local_day(now)
        violations = rules.validate_draft(draft, self.deps.ref, caller_facility=facility, today=today,
                                          icd_valid=self.deps.icd_valid, supplied_days=supplied_days)
        if violations:
            raise DraftRejected(violations)
        active = [m for m in await self.deps.store.medications(draft.patient.identifier.key)
                  if m.prescription_code != excluding]
        lines = [(line, self.deps.ref.drugs[line.drug_code]) for line in draft.lines]
        findings = safety.check(lines, active, draft.patient.allergies, self.deps.ref, today)
        blocking = safety.blocking(findings)
        if blocking and not override_reason.strip():
            raise SafetyBlocked(blocking)
        return findings

    def _sign(self, draft: Draft, facility: str, now: datetime, replaces: str = "", new_supply: bool = False):
        today = local_day(now)
        registered = self.deps.ref.prescribers[draft.prescriber.certificate_number.strip()]
        new = NewPrescription(
            code=codes.new_code(facility, draft.type), facility_code=facility, draft=draft,
            drugs=tuple(self.deps.ref.drugs[line.drug_code] for line in draft.lines), prescriber=registered,
            issued_at=now, valid_until=rules.valid_until(draft, self.deps.ref, today), replaces_code=replaces,
            new_supply=new_supply)
        return self.deps.signer.sign(new)

    async def _owned(self, code: str, facility: str) -> StoredPrescription:
        stored = await self.deps.store.get(code)
        if stored is None:
            raise NotFound(f"no prescription {code}")
        if stored.prescription.facility_code.lower() != facility.lower():
            raise NotPermitted("NOT_ISSUING_FACILITY",
                               f"only the issuing facility {stored.prescription.facility_code} may change {code}")
        return stored

    @staticmethod
    def _still_changeable(stored: StoredPrescription, today: date, verb: str) -> None:
        current = stored.status_on(today)
        if current in FINAL:
            raise InvalidState("NOT_CHANGEABLE",
                               f"prescription {stored.prescription.code} is {current.value} and cannot be {verb}")
