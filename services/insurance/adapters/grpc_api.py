"""InsuranceService over gRPC: translates requests to commands and results back."""
from __future__ import annotations

from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc

from services.common.auth import Role
from services.common.grpc_server import ServiceBinding

SERVICE_NAME = insurance_pb2.DESCRIPTOR.services_by_name["InsuranceService"].full_name

METHOD_ROLES = {
    "CheckEligibility": frozenset({Role.PHARMACY, Role.SERVICE, Role.INSURER, Role.PRESCRIBER}),
    "QuoteCoverage": frozenset({Role.PHARMACY, Role.SERVICE}),
    "GetClaim": frozenset({Role.INSURER}),
}


class InsuranceServicer(insurance_pb2_grpc.InsuranceServiceServicer):
    """Methods not yet implemented answer UNIMPLEMENTED (the generated base behaviour)."""


def binding(servicer: insurance_pb2_grpc.InsuranceServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, insurance_pb2_grpc.add_InsuranceServiceServicer_to_server,
                          servicer, METHOD_ROLES)
