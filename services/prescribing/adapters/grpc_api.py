"""PrescribingService over gRPC: translates requests to handler calls and domain refusals
to statuses with details. Nothing else happens here."""
from __future__ import annotations

import grpc
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc

from services.common.auth import Role
from services.common.grpc_errors import FieldViolation, RpcFailure, abort
from services.common.grpc_server import ServiceBinding
from services.common.logging import correlation_id
from services.common.request_context import caller
from services.prescribing.domain.model import (DraftRejected, InvalidState, NotFound, NotPermitted, PrescribingError,
                                               RequestConflict, SafetyBlocked)
from services.prescribing.handlers import Prescribing

SERVICE_NAME = prescribing_pb2.DESCRIPTOR.services_by_name["PrescribingService"].full_name

METHOD_ROLES = {
    "IssuePrescription": frozenset({Role.PRESCRIBER}),
    "ReplacePrescription": frozenset({Role.PRESCRIBER}),
    "CancelPrescription": frozenset({Role.PRESCRIBER}),
    "GetPrescription": frozenset({Role.PRESCRIBER, Role.PHARMACY, Role.INSURER, Role.OPERATOR}),
    "ListPatientMedications": frozenset({Role.PRESCRIBER, Role.PHARMACY}),
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


class PrescribingServicer(prescribing_pb2_grpc.PrescribingServiceServicer):
    def __init__(self, handlers: Prescribing):
        self._h = handlers

    async def _run(self, context, call):
        try:
            return await call()
        except PrescribingError as error:
            await abort(context, failure_of(error))

    async def IssuePrescription(self, request, context):
        return await self._run(context, lambda: self._h.issue(request, caller(), correlation_id.get() or ""))

    async def ReplacePrescription(self, request, context):
        return await self._run(context, lambda: self._h.replace(request, caller(), correlation_id.get() or ""))

    async def CancelPrescription(self, request, context):
        return await self._run(context, lambda: self._h.cancel(request, caller(), correlation_id.get() or ""))

    async def GetPrescription(self, request, context):
        return await self._run(context, lambda: self._h.get(request, caller()))

    async def ListPatientMedications(self, request, context):
        return await self._run(context, lambda: self._h.medications(request))


def binding(servicer: prescribing_pb2_grpc.PrescribingServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, prescribing_pb2_grpc.add_PrescribingServiceServicer_to_server,
                          servicer, METHOD_ROLES)
