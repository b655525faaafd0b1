"""Signed prescriptions made for pharmacy tests, and a pharmacy server (with an insurance
server beside it) in the test process over real channels and the real Redis."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

import grpc
import pytest
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2 as pb
from eprescription.pharmacy.v1 import pharmacy_pb2_grpc

from services.common import dates, signatures
from services.common.auth import Authenticator, load_tokens, write_credentials
from services.common.events import new_envelope
from services.common.grpc_server import create_server, mark_serving
from services.insurance.adapters.grpc_api import InsuranceServicer
from services.insurance.adapters.grpc_api import binding as insurance_binding
from services.insurance.bootstrap import bootstrap as insurance_bootstrap
from services.insurance.config import Settings as InsuranceSettings
from services.pharmacy.adapters.grpc_api import SERVICE_NAME, PharmacyServicer, binding
from services.pharmacy.adapters.insurance_client import InsuranceClient
from services.pharmacy.bootstrap import bootstrap
from services.pharmacy.config import Settings
from services.pharmacy.worker import ledger_projection
from tests.support.prescribing_fixtures import Clock, prescribing_settings
from tests.support import admin_redis_async, random_citizen_id

ISSUED_AT = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)


def signed_prescription(lines, *, rx_type=common_pb2.PRESCRIPTION_TYPE_ORDINARY, diagnoses=("J02.9",),
                        valid_until=date(2026, 12, 4), batches=(), key_id="pk-01001-001", card="",
                        patient="", replaces="", not_available=()) -> common_pb2.Prescription:
    code = f"01001{uuid.uuid4().hex[:7]}-{'cnhy'[rx_type - 1]}"
    rx = common_pb2.Prescription(code=code, type=rx_type, facility_code="01001",
                                 valid_until=dates.to_proto(valid_until), replaces_code=replaces)
    rx.patient.identifier.citizen_id = patient or random_citizen_id()
    rx.patient.name, rx.patient.address, rx.patient.bhyt_card = "Lê Thị Test", "1 Tràng Tiền", card
    for icd in diagnoses:
        rx.diagnoses.add(icd10=icd, text="test")
    rx.prescriber.certificate_number = "001234/HNO-CCHN"
    for n, spec in enumerate(lines, start=1):
        drug, qty = spec[0], spec[1]
        rx.lines.add(line_number=n, drug_code=drug, quantity=qty, days=5, batch_number=spec[2] if len(spec) > 2 else 0,
                     not_available_at_facility=n in not_available,
                     not_available_reason="tender failed; no substitute" if n in not_available else "")
    for number, start, end in batches:
        rx.batches.add(number=number, start=dates.to_proto(start), end=dates.to_proto(end))
    rx.issued_at.FromDatetime(ISSUED_AT)
    keys = signatures.load_private_keys(prescribing_settings().keys_dir)
    signatures.sign(rx, key_id, keys[key_id])
    return rx


def issued_event(rx):
    return new_envelope(events_pb2.PrescriptionIssued(prescription=rx), key=rx.code, producer="test",
                        correlation_id="t", occurred_at=ISSUED_AT)


@pytest.fixture
async def pharmacy(tmp_path):
    """(stub, tokens, clock, handlers) with an insurance server behind the pharmacy service."""
    write_credentials(tmp_path)
    tokens = load_tokens(tmp_path / "tokens.json")
    authenticator = Authenticator.from_file(tmp_path / "credentials.json")
    clock = Clock(ISSUED_AT)
    ins_settings = InsuranceSettings.from_env()
    ins_redis = admin_redis_async(ins_settings.common.redis_url_for("admin"), protocol=3)
    ins_handlers, ins_close = insurance_bootstrap(ins_settings, clock=clock, redis_client=ins_redis)
    ins_server, ins_port, ins_health = await create_server("127.0.0.1:0", [insurance_binding(InsuranceServicer(ins_handlers))],
                                                           authenticator)
    await ins_server.start()
    settings = Settings.from_env()
    client = admin_redis_async(settings.common.redis_url_for("admin"), protocol=3)
    insurance = InsuranceClient(f"127.0.0.1:{ins_port}", tokens["service-pharmacy"], 2.0)
    handlers, close = bootstrap(settings, clock=clock, redis_client=client, insurance=insurance)
    server, port, health = await create_server("127.0.0.1:0", [binding(PharmacyServicer(handlers))], authenticator)
    await server.start()
    await mark_serving(health, [SERVICE_NAME])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pharmacy_pb2_grpc.PharmacyServiceStub(channel), tokens, clock, handlers
    await server.stop(0)
    await ins_server.stop(0)
    await insurance.close()
    await close()
    await ins_close()


async def ready(handlers, *lines, **kw):
    rx = signed_prescription(lines or [("N02BE01-500T", 20), ("J01CR02-1GT", 14)], **kw)
    await ledger_projection(handlers)(issued_event(rx))
    return rx


def sale(code, *lines, key=None, card=None):
    request = pb.DispensePrescriptionRequest(idempotency_key=key or str(uuid.uuid4()), code=code,
                                             lines=[pb.DispenseLine(line_number=n, drug_code=d, quantity=q,
                                                                    unit_price_vnd=p, substitution=s)
                                                    for n, d, q, p, s in lines])
    if card:
        request.bhyt_card = card
    else:
        request.self_pay = True
    return request
