"""PharmacyService over gRPC: translates requests to commands and results back."""
from __future__ import annotations

from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc

from services.common.auth import Role
from services.common.grpc_server import ServiceBinding

SERVICE_NAME = pharmacy_pb2.DESCRIPTOR.services_by_name["PharmacyService"].full_name

METHOD_ROLES = {
    "LookupPrescription": frozenset({Role.PHARMACY, Role.OPERATOR}),
    "DispensePrescription": frozenset({Role.PHARMACY}),
    "ReverseDispense": frozenset({Role.PHARMACY}),
}


class PharmacyServicer(pharmacy_pb2_grpc.PharmacyServiceServicer):
    """Methods not yet implemented answer UNIMPLEMENTED (the generated base behaviour)."""


def binding(servicer: pharmacy_pb2_grpc.PharmacyServiceServicer) -> ServiceBinding:
    return ServiceBinding(SERVICE_NAME, pharmacy_pb2_grpc.add_PharmacyServiceServicer_to_server,
                          servicer, METHOD_ROLES)
