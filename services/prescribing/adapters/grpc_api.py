"""PrescribingService over gRPC: translates requests to commands and results back."""
from __future__ import annotations

from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc

from services.common.auth import Role
from services.common.grpc_server import ServiceBinding

SERVICE_NAME = prescribing_pb2.DESCRIPTOR.services_by_name["PrescribingService"].full_name

METHOD_ROLES = {
    "IssuePrescription": frozenset({Role.PRESCRIBER}),
    "ReplacePrescription": frozenset({Role.PRESCRIBER}),
    "CancelPrescription": frozenset({Role.PRESCRIBER}),
    "GetPrescription": frozenset({Role.PRESCRIBER, Role.PHARMACY, Role.INSURER, Role.OPERATOR}),
    "ListPatientMedications": frozenset({Role.PRESCRIBER, Role.PHARMACY}),
}


class PrescribingServicer(prescribing_pb2_grpc.PrescribingServiceServicer):
    """Methods not yet implemented answer UNIMPLEMENTED (the generated base behaviour)."""


def binding(servicer: prescribing_pb2_grpc.PrescribingServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, prescribing_pb2_grpc.add_PrescribingServiceServicer_to_server,
                          servicer, METHOD_ROLES)
