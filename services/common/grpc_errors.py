"""Errors as gRPC statuses with google.rpc details: the field and the rule that failed."""
from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "eprescription.vn"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class RpcFailure:
    """Everything a client needs to act on a refusal."""

    code: grpc.StatusCode
    message: str
    reason: str = ""                     # machine-readable rule name, e.g. QUANTITY_EXCEEDS_REMAINING
    violations: tuple[FieldViolation, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    def to_status(self) -> grpc.Status:
        details = []
        if self.reason:
            details.append(error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN,
                                                       metadata=self.metadata))
        if self.violations:
            if self.code == grpc.StatusCode.FAILED_PRECONDITION:
                details.append(error_details_pb2.PreconditionFailure(violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=self.reason or "PRECONDITION", subject=v.field, description=v.description)
                    for v in self.violations]))
            else:
                details.append(error_details_pb2.BadRequest(field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in self.violations]))
        packed = []
        for detail in details:
            any_detail = any_pb2.Any()
            any_detail.Pack(detail)
            packed.append(any_detail)
        status = status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)
        return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext, failure: RpcFailure) -> None:
    await context.abort_with_status(failure.to_status())


def details_of(error: grpc.RpcError) -> list:
    """Unpacks the rich details of a failed call (for clients and tests)."""
    status = rpc_status.from_call(error)
    if status is None:
        return []
    unpacked = []
    for detail in status.details:
        for cls in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo,
                    error_details_pb2.PreconditionFailure):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                unpacked.append(message)
    return unpacked


