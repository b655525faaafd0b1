"""Every method of every service, called by every role and without a credential, over real
channels: the method-role tables are the contract, and this is that contract as a test."""
from __future__ import annotations

import uuid

import grpc
import pytest
from eprescription.insurance.v1 import insurance_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2
from eprescription.prescribing.v1 import prescribing_pb2
from google.protobuf.message_factory import GetMessageClass

from services.common.auth import DEMO_CALLERS
from services.insurance.adapters import grpc_api as insurance_api
from services.pharmacy.adapters import grpc_api as pharmacy_api
from services.prescribing.adapters import grpc_api as prescribing_api
from tests.support import factories as f
from tests.support import random_citizen_id
from tests.support.pharmacy_fixtures import ready, sale
from tests.support.prescribing_fixtures import auth
from tests.support.rpc import reason_of, refused

SERVICES = {"prescribing": prescribing_api, "pharmacy": pharmacy_api, "insurance": insurance_api}
CONTRACTS = {"prescribing": prescribing_pb2, "pharmacy": pharmacy_pb2, "insurance": insurance_pb2}
LABELS = [label for label, *_ in DEMO_CALLERS]
ROLE_OF = {label: role for label, role, *_ in DEMO_CALLERS}
REFUSED_FOR_WHO = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
NEVER = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def calls():
    for service, api in SERVICES.items():
        for method in api.METHOD_ROLES:
            for label in [None, *LABELS]:
                yield pytest.param(service, method, label, id=f"{service}.{method}.{label or 'anonymous'}")


@pytest.fixture
def channels(prescribing, pharmacy, insurance):
    """One stub per service, the credentials shared (the fixtures write them once per test)."""
    return {"prescribing": prescribing[0], "pharmacy": pharmacy[0], "insurance": insurance[0]}, prescribing[1]


async def call(stub, service: str, method: str, metadata):
    service_descriptor = next(iter(CONTRACTS[service].DESCRIPTOR.services_by_name.values()))
    request = GetMessageClass(service_descriptor.methods_by_name[method].input_type)()
    try:
        await getattr(stub, method)(request, metadata=metadata, timeout=10)
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        return error.code()


@pytest.mark.parametrize("service, method, label", list(calls()))
async def test_each_role_reaches_only_its_methods(channels, service, method, label):
    stubs, tokens = channels
    metadata = auth(tokens, label) if label else ()
    code = await call(stubs[service], service, method, metadata)
    if label is None:
        assert code == grpc.StatusCode.UNAUTHENTICATED
    elif ROLE_OF[label] in SERVICES[service].METHOD_ROLES[method]:
        assert code not in REFUSED_FOR_WHO + NEVER, code    # past the door: the request itself is judged
    else:
        assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_forged_token_is_unauthenticated(channels):
    stubs, tokens = channels
    forged = tokens["pharmacy-a"][:-4] + "abcd"
    code = await call(stubs["pharmacy"], "pharmacy", "LookupPrescription", (("authorization", f"Bearer {forged}"),))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_own_and_other_identity_within_a_role(channels, pharmacy):
    stubs, tokens = channels
    issued = await stubs["prescribing"].IssuePrescription(prescribing_pb2.IssuePrescriptionRequest(
        client_request_id=str(uuid.uuid4()), draft=f.draft(patient=f.patient(citizen_id=random_citizen_id()))),
        metadata=auth(tokens, "prescriber-hospital-a"))
    other = await refused(stubs["prescribing"].CancelPrescription(prescribing_pb2.CancelPrescriptionRequest(
        code=issued.prescription.code, reason="not mine"), metadata=auth(tokens, "prescriber-hospital-b")),
        grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(other) == "NOT_ISSUING_FACILITY"
    rx = await ready(pharmacy[3])
    sold = await stubs["pharmacy"].DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 1, 1_000, False)),
                                                        metadata=auth(tokens, "pharmacy-a"))
    err = await refused(stubs["pharmacy"].ReverseDispense(pharmacy_pb2.ReverseDispenseRequest(
        dispense_id=sold.dispense_id, reason="not mine"), metadata=auth(tokens, "pharmacy-b")),
        grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(err) == "NOT_DISPENSING_PHARMACY"
