"""PharmacyService over gRPC: translates requests to handler calls and refusals to statuses."""
from __future__ import annotations

import grpc
from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc

from services.common.auth import Role
from services.common.grpc_errors import FieldViolation, RpcFailure, abort
from services.common.grpc_server import ServiceBinding
from services.common.logging import correlation_id
from services.common.request_context import caller
from services.pharmacy.domain.rules import (InsuranceUnavailable, InvalidRequest, NotFound, NotPermitted,
                                            PharmacyError, Refused, RequestConflict)
from services.pharmacy.handlers import Pharmacy

SERVICE_NAME = pharmacy_pb2.DESCRIPTOR.services_by_name["PharmacyService"].full_name

METHOD_ROLES = {
    "LookupPrescription": frozenset({Role.PHARMACY, Role.OPERATOR}),
    "DispensePrescription": frozenset({Role.PHARMACY}),
    "ReverseDispense": frozenset({Role.PHARMACY}),
}


def failure_of(error: PharmacyError) -> RpcFailure:
    if isinstance(error, InvalidRequest):
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{error.field}: {error}", error.rule,
                          (FieldViolation(error.field, f"{error.rule}: {error}"),))
    if isinstance(error, Refused):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(error), error.rule,
                          (FieldViolation(error.subject, f"{error.rule}: {error}"),))
    if isinstance(error, NotFound):
        return RpcFailure(grpc.StatusCode.NOT_FOUND, str(error), "NOT_FOUND")
    if isinstance(error, NotPermitted):
        return RpcFailure(grpc.StatusCode.PERMISSION_DENIED, str(error), error.rule)
    if isinstance(error, RequestConflict):
        return RpcFailure(grpc.StatusCode.ALREADY_EXISTS, str(error), "IDEMPOTENCY_KEY_REUSED",
                          (FieldViolation("idempotency_key", str(error)),))
    if isinstance(error, InsuranceUnavailable):
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, f"{error}; nothing was recorded (retry, or sell as self-pay)",
                          "INSURANCE_UNAVAILABLE")
    raise TypeError(f"unmapped domain error {type(error).__name__}")


class PharmacyServicer(pharmacy_pb2_grpc.PharmacyServiceServicer):
    def __init__(self, handlers: Pharmacy):
        self._h = handlers

    async def _run(self, context, call):
        try:
            return await call()
        except PharmacyError as error:
            await abort(context, failure_of(error))

    async def LookupPrescription(self, request, context):
        return await self._run(context, lambda: self._h.lookup(request))

    async def DispensePrescription(self, request, context):
        return await self._run(context, lambda: self._h.dispense(request, caller(), correlation_id.get() or ""))

    async def ReverseDispense(self, request, context):
        return await self._run(context, lambda: self._h.reverse(request, caller(), correlation_id.get() or ""))


def binding(servicer: pharmacy_pb2_grpc.PharmacyServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, pharmacy_pb2_grpc.add_PharmacyServiceServicer_to_server,
                          servicer, METHOD_ROLES)
