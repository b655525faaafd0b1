"""InsuranceService over gRPC: translates requests to handler calls and refusals to statuses."""
from __future__ import annotations

import grpc
from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc

from services.common.auth import Role
from services.common.grpc_errors import FieldViolation, RpcFailure, abort
from services.common.grpc_server import ServiceBinding
from services.insurance.domain.model import InsuranceError, InvalidIdentifier, NotEligible, UnknownDrug, UnknownMember
from services.insurance.handlers import Insurance

SERVICE_NAME = insurance_pb2.DESCRIPTOR.services_by_name["InsuranceService"].full_name

METHOD_ROLES = {
    "CheckEligibility": frozenset({Role.PHARMACY, Role.SERVICE, Role.INSURER, Role.PRESCRIBER}),
    "QuoteCoverage": frozenset({Role.PHARMACY, Role.SERVICE}),
    "GetClaim": frozenset({Role.INSURER}),
}


def failure_of(error: InsuranceError) -> RpcFailure:
    if isinstance(error, (InvalidIdentifier, UnknownDrug)):
        reason = "IDENTIFIER_FORMAT" if isinstance(error, InvalidIdentifier) else "LINE_INVALID"
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{error.field}: {error}", reason,
                          (FieldViolation(error.field, str(error)),))
    if isinstance(error, UnknownMember):
        return RpcFailure(grpc.StatusCode.NOT_FOUND, str(error), "NOT_FOUND")
    if isinstance(error, NotEligible):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(error), error.reason,
                          (FieldViolation("card_identifier", str(error)),))
    raise TypeError(f"unmapped domain error {type(error).__name__}")


class InsuranceServicer(insurance_pb2_grpc.InsuranceServiceServicer):
    def __init__(self, handlers: Insurance):
        self._h = handlers

    async def _run(self, context, call):
        try:
            return await call()
        except InsuranceError as error:
            await abort(context, failure_of(error))

    async def CheckEligibility(self, request, context):
        return await self._run(context, lambda: self._h.eligibility(request))

    async def QuoteCoverage(self, request, context):
        return await self._run(context, lambda: self._h.quote(request))

    async def GetClaim(self, request, context):
        return await self._run(context, lambda: self._h.claim(request))


def binding(servicer: insurance_pb2_grpc.InsuranceServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, insurance_pb2_grpc.add_InsuranceServiceServicer_to_server,
                          servicer, METHOD_ROLES)
