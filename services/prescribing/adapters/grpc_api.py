"""PrescribingService over gRPC: translates requests to handler calls and domain refusals
to statuses with details. Nothing else happens here."""
from __future__ import annotations

import hashlib

import grpc
from eprescription.common.v1 import common_pb2
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc

from services.common import dates, privacy
from services.common.audit import Audited
from services.common.auth import Role
from services.common.grpc_errors import FieldViolation, RpcFailure, abort
from services.common.grpc_server import ServiceBinding
from services.common.request_context import caller
from services.kernel.protected import Reader
from services.prescribing.adapters import mapping
from services.prescribing.domain.commands import (CancelPrescription, GetPrescription, IssuePrescription,
                                                  ListPatientMedications, ReplacePrescription)
from services.prescribing.domain.model import (DraftRejected, InvalidState, Issued, MedicationEntry, NotFound,
                                               NotPermitted, PrescribingError, PrescriptionView, RequestConflict,
                                               SafetyBlocked)
from services.prescribing.handlers import Prescribing

SERVICE_NAME = prescribing_pb2.DESCRIPTOR.services_by_name["PrescribingService"].full_name

METHOD_ROLES = {
    "IssuePrescription": frozenset({Role.PRESCRIBER}),
    "ReplacePrescription": frozenset({Role.PRESCRIBER}),
    "CancelPrescription": frozenset({Role.PRESCRIBER}),
    "GetPrescription": frozenset({Role.PRESCRIBER, Role.PHARMACY, Role.INSURER, Role.OPERATOR}),
    "ListPatientMedications": frozenset({Role.PRESCRIBER, Role.PHARMACY}),
}


def _draft_patient(request):
    return request.draft.patient.identifier if request.HasField("draft") else None


# Who each call concerns, for the audit trail (services/common/audit.py)
AUDITED = {
    "IssuePrescription": Audited(lambda q, a: (_draft_patient(q), a.prescription.code if a else ""), change=True),
    "ReplacePrescription": Audited(lambda q, a: (_draft_patient(q), a.prescription.code if a else q.code),
                                   change=True),
    "CancelPrescription": Audited(lambda q, a: (None, q.code), change=True),
    "GetPrescription": Audited(lambda q, a: (a.prescription.patient.identifier if a else None, q.code)),
    "ListPatientMedications": Audited(lambda q, a: (q.patient, "")),
}


def failure_of(error: PrescribingError) -> RpcFailure:
    if isinstance(error, DraftRejected):
        first = error.violations[0]
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(error), first.rule,
                          tuple(FieldViolation(v.field, f"{v.rule}: {v.message}") for v in error.violations))
    if isinstance(error, SafetyBlocked):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION,
                          f"blocked by patient-safety checks (give an override reason to proceed): {error}",
                          "SAFETY_BLOCKED",
                          tuple(FieldViolation(",".join(f.drug_codes), f"{f.rule}: {f.message}")
                                for f in error.findings))
    if isinstance(error, NotFound):
        return RpcFailure(grpc.StatusCode.NOT_FOUND, str(error), "PRESCRIPTION_NOT_FOUND")
    if isinstance(error, NotPermitted):
        return RpcFailure(grpc.StatusCode.PERMISSION_DENIED, str(error), error.rule)
    if isinstance(error, InvalidState):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(error), error.rule,
                          (FieldViolation("code", str(error)),))
    if isinstance(error, RequestConflict):
        return RpcFailure(grpc.StatusCode.ALREADY_EXISTS, str(error), "REQUEST_ID_REUSED",
                          (FieldViolation("client_request_id", str(error)),))
    raise TypeError(f"unmapped domain error {type(error).__name__}")


def fingerprint(request) -> str:
    """The request as sent: a retry of the same request has the same fingerprint."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def _draft(request):
    return mapping.draft(request.draft) if request.HasField("draft") else None


def issue_command(request: prescribing_pb2.IssuePrescriptionRequest, facility: str) -> IssuePrescription:
    return IssuePrescription(facility, request.client_request_id, _draft(request), request.override_reason,
                             fingerprint(request))


def replace_command(request: prescribing_pb2.ReplacePrescriptionRequest, facility: str) -> ReplacePrescription:
    return ReplacePrescription(facility, request.client_request_id, request.code, _draft(request), request.reason,
                               request.override_reason, fingerprint(request), request.new_supply)


def medications_query(request: prescribing_pb2.ListPatientMedicationsRequest,
                      reader: Reader | None = None) -> ListPatientMedications:
    given = request.HasField("as_of")
    return ListPatientMedications(mapping.patient_id(request.patient),
                                  dates.from_proto(request.as_of) if given else None, given, reader)


PURPOSES = {Role.PRESCRIBER: "treatment", Role.PHARMACY: "dispensing", Role.INSURER: "claims",
            Role.OPERATOR: "operations", Role.SERVICE: "service"}


def reader_of(who) -> Reader | None:
    """The authenticated caller as the HIV rule sees it: role, organisation and purpose."""
    if who is None:
        return None
    return Reader(who.role.value, who.identity, PURPOSES.get(who.role, "unknown"))


def issued_response(issued: Issued, cls):
    return cls(prescription=common_pb2.Prescription.FromString(issued.prescription.document),
               warnings=[mapping.finding_to_proto(f) for f in issued.warnings])


def view_response(view: PrescriptionView) -> prescribing_pb2.GetPrescriptionResponse:
    stored = view.stored
    rx = common_pb2.Prescription.FromString(stored.prescription.document)
    return prescribing_pb2.GetPrescriptionResponse(
        prescription=privacy.without_identity(rx) if view.identity_hidden else rx,
        status=mapping.status_to_proto(view.status), replaced_by=stored.replaced_by,
        dispensing_closed=stored.closed_dispensed is not None,
        lines=progress_lines(stored.progress()))


def progress_lines(progress: list[tuple[int, int, int]]) -> list[prescribing_pb2.LineProgress]:
    return [prescribing_pb2.LineProgress(line_number=n, prescribed=q, dispensed=d) for n, q, d in progress]


def medications_response(entries: list[MedicationEntry]) -> prescribing_pb2.ListPatientMedicationsResponse:
    reply = prescribing_pb2.ListPatientMedicationsResponse()
    for e in entries:
        med = e.medication
        reply.medications.add(
            prescription_code=med.prescription_code, facility_code=med.facility_code, drug_code=med.drug_code,
            drug_name=e.drug_name, active_ingredient=" + ".join(med.ingredients), prescribed=med.prescribed,
            dispensed=med.dispensed, remaining_days=e.remaining_days, status=mapping.status_to_proto(e.status))
    return reply


class PrescribingServicer(prescribing_pb2_grpc.PrescribingServiceServicer):
    def __init__(self, handlers: Prescribing):
        self._h = handlers

    async def _run(self, context, call):
        try:
            return await call()
        except PrescribingError as error:
            await abort(context, failure_of(error))

    async def IssuePrescription(self, request, context):
        async def call():
            issued = await self._h.issue(issue_command(request, caller().identity))
            return issued_response(issued, prescribing_pb2.IssuePrescriptionResponse)
        return await self._run(context, call)

    async def ReplacePrescription(self, request, context):
        async def call():
            issued = await self._h.replace(replace_command(request, caller().identity))
            reply = issued_response(issued, prescribing_pb2.ReplacePrescriptionResponse)
            reply.dispensed.extend(progress_lines(await self._h.progress(request.code)))
            return reply
        return await self._run(context, call)

    async def CancelPrescription(self, request, context):
        async def call():
            done = await self._h.cancel(CancelPrescription(caller().identity, request.code, request.reason))
            return prescribing_pb2.CancelPrescriptionResponse(
                status=mapping.status_to_proto(done), dispensed=progress_lines(await self._h.progress(request.code)))
        return await self._run(context, call)

    async def GetPrescription(self, request, context):
        async def call():
            who = caller()
            return view_response(await self._h.get(GetPrescription(request.code, who.identity if who else None,
                                                                   reader_of(who))))
        return await self._run(context, call)

    async def ListPatientMedications(self, request, context):
        async def call():
            return medications_response(await self._h.medications(medications_query(request, reader_of(caller()))))
        return await self._run(context, call)


def binding(servicer: prescribing_pb2_grpc.PrescribingServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, prescribing_pb2_grpc.add_PrescribingServiceServicer_to_server,
                          servicer, METHOD_ROLES, AUDITED)
