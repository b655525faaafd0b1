"""PrescribingService over a real channel, with the real Redis, Kafka, relay and worker:
every RPC and every error path, with the status code and the field in the details."""
import uuid

import grpc
import pytest
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.prescribing.v1 import prescribing_pb2 as pb
from kafka import KafkaProducer

from services.common import signatures
from services.common.events import new_envelope, to_record
from services.common.topics import DISPENSES
from services.kernel.calendar import utc_now
from tests.support import eventually, random_citizen_id
from tests.support import factories as f
from tests.support.prescribing_fixtures import auth, prescribing_settings
from tests.support.rpc import fields_of, reason_of, refused

pytestmark = pytest.mark.usefixtures("pipeline")
ACTIVE = common_pb2.PRESCRIPTION_STATUS_ACTIVE


def draft_for(citizen_id, lines=None, **kw):
    return f.draft(lines, patient=f.patient(citizen_id=citizen_id), **kw)


def issue_request(d, **kw):
    return pb.IssuePrescriptionRequest(client_request_id=str(uuid.uuid4()), draft=d, **kw)


async def listed(stub, tokens, citizen_id, code):
    async def check():
        reply = await stub.ListPatientMedications(
            pb.ListPatientMedicationsRequest(patient=common_pb2.PatientIdentifier(citizen_id=citizen_id)),
            metadata=auth(tokens, "prescriber-hospital-a"))
        return reply if any(m.prescription_code == code for m in reply.medications) else None
    return await eventually(check, timeout=60, message=f"{code} in the medication list")


async def test_issue_assigns_a_signed_national_code_and_a_retry_returns_the_first_result(prescribing):
    stub, tokens, clock, _ = prescribing
    request = issue_request(draft_for(random_citizen_id()))
    first = await stub.IssuePrescription(request, metadata=auth(tokens, "prescriber-hospital-a"))
    rx = first.prescription
    assert rx.code.startswith("01001") and rx.code.endswith("-c") and len(rx.code) == 14
    assert rx.lines[0].drug_name == "Panadol 500mg" and rx.lines[0].active_ingredient == "paracetamol"
    assert (rx.valid_until.year, rx.valid_until.month, rx.valid_until.day) == (2026, 12, 4)
    assert rx.prescriber.name == "BS. Demo Một"
    public = signatures.load_public_keys(prescribing_settings().keys_dir)
    assert rx.signature.key_id == "pk-01001-001" and signatures.verify(rx, public)

    again = await stub.IssuePrescription(request, metadata=auth(tokens, "prescriber-hospital-a"))
    assert again == first

    changed = pb.IssuePrescriptionRequest(client_request_id=request.client_request_id,
                                          draft=draft_for(random_citizen_id()))
    err = await refused(stub.IssuePrescription(changed, metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.ALREADY_EXISTS)
    assert fields_of(err) == ["client_request_id"]


@pytest.mark.parametrize("request_, field, reason", [
    (pb.IssuePrescriptionRequest(draft=f.draft()), "client_request_id", "REQUEST_ID_REQUIRED"),
    (pb.IssuePrescriptionRequest(client_request_id="r1"), "draft", "DRAFT_REQUIRED"),
    (issue_request(f.draft([f.line(quantity=7)])), "draft.lines[0].quantity", "QUANTITY_INCONSISTENT"),
    (issue_request(f.draft([f.line(drug_code="NOPE")])), "draft.lines[0].drug_code", "DRUG_UNKNOWN"),
    (issue_request(f.draft(diagnoses=(("Q99.99", "x"),))), "draft.diagnoses[0].icd10", "ICD10_UNKNOWN"),
    (issue_request(f.draft(patient=f.patient(citizen_id="123"))), "draft.patient.identifier.citizen_id",
     "CITIZEN_ID_FORMAT"),
    (issue_request(f.draft([f.line("N05BA01-5T", quantity=20, per_day=4, days=5)])), "draft.lines[0].drug_code",
     "TYPE_MIXING"),
])
async def test_an_invalid_issue_is_refused_naming_the_field_and_the_rule(prescribing, request_, field, reason):
    stub, tokens, _, _ = prescribing
    err = await refused(stub.IssuePrescription(request_, metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert field in fields_of(err)
    assert reason_of(err) == reason


async def test_a_prescriber_can_only_issue_for_their_own_facility(prescribing):
    stub, tokens, _, _ = prescribing
    err = await refused(stub.IssuePrescription(issue_request(f.draft()), metadata=auth(tokens, "prescriber-hospital-b")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert "draft.prescriber.facility_code" in fields_of(err)


async def test_a_contraindication_across_facilities_blocks_unless_overridden(prescribing):
    stub, tokens, _, _ = prescribing
    patient = random_citizen_id()
    statin = await stub.IssuePrescription(issue_request(
        draft_for(patient, [f.line("C10AA01-20T", quantity=30, per_day=1, days=30)],
                  diagnoses=(("E78.0", "Hypercholesterolaemia"),))), metadata=auth(tokens, "prescriber-hospital-a"))
    await listed(stub, tokens, patient, statin.prescription.code)

    macrolide = draft_for(patient, [f.line("J01FA09-500T", quantity=14, per_day=2, days=7)], prescriber=f.PRESCRIBER_B)
    err = await refused(stub.IssuePrescription(issue_request(macrolide), metadata=auth(tokens, "prescriber-hospital-b")),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "SAFETY_BLOCKED"
    assert "J01FA09-500T,C10AA01-20T" in fields_of(err)
    assert "simvastatin" in err.details()

    overridden = await stub.IssuePrescription(issue_request(macrolide, override_reason="statin paused by patient"),
                                              metadata=auth(tokens, "prescriber-hospital-b"))
    assert overridden.prescription.code.startswith("79001")
    assert any(w.rule == "interaction" and w.severity == pb.SEVERITY_CONTRAINDICATED for w in overridden.warnings)


async def test_get_reports_status_and_progress_and_refuses_bad_codes(prescribing):
    stub, tokens, _, _ = prescribing
    issued = await stub.IssuePrescription(issue_request(draft_for(random_citizen_id())),
                                          metadata=auth(tokens, "prescriber-hospital-a"))
    code = issued.prescription.code
    got = await stub.GetPrescription(pb.GetPrescriptionRequest(code=code.upper()), metadata=auth(tokens, "pharmacy-b"))
    assert got.status == ACTIVE and got.prescription == issued.prescription
    assert [(l.line_number, l.prescribed, l.dispensed) for l in got.lines] == [(1, 20, 0)]
    await refused(stub.GetPrescription(pb.GetPrescriptionRequest(code="01001zzzzzzz-c"),
                                       metadata=auth(tokens, "pharmacy-b")), grpc.StatusCode.NOT_FOUND)
    err = await refused(stub.GetPrescription(pb.GetPrescriptionRequest(code="not-a-code"),
                                             metadata=auth(tokens, "pharmacy-b")), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["code"]


async def test_replace_links_old_and_new_and_only_the_issuing_facility_may(prescribing):
    stub, tokens, _, _ = prescribing
    patient = random_citizen_id()
    old = (await stub.IssuePrescription(issue_request(draft_for(patient)),
                                        metadata=auth(tokens, "prescriber-hospital-a"))).prescription
    replacement = draft_for(patient, [f.line(quantity=15, per_day=3)])

    def replace_request(**kw):
        fields = dict(client_request_id=str(uuid.uuid4()), code=old.code, draft=replacement, reason="dose lowered")
        fields.update(kw)
        return pb.ReplacePrescriptionRequest(**fields)

    await refused(stub.ReplacePrescription(replace_request(), metadata=auth(tokens, "prescriber-hospital-b")),
                  grpc.StatusCode.PERMISSION_DENIED)
    err = await refused(stub.ReplacePrescription(replace_request(reason=""), metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["reason"]
    narcotic = f.draft([f.line("N02AA01-10T", quantity=28, per_day=4, days=7)],
                       rx_type=common_pb2.PRESCRIPTION_TYPE_NARCOTIC, patient=f.patient(citizen_id=patient))
    err = await refused(stub.ReplacePrescription(replace_request(draft=narcotic),
                                                 metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["draft.type"]

    new = await stub.ReplacePrescription(replace_request(), metadata=auth(tokens, "prescriber-hospital-a"))
    assert new.prescription.replaces_code == old.code and new.prescription.code != old.code
    before = await stub.GetPrescription(pb.GetPrescriptionRequest(code=old.code), metadata=auth(tokens, "pharmacy-a"))
    assert before.status == common_pb2.PRESCRIPTION_STATUS_REPLACED and before.replaced_by == new.prescription.code
    assert before.prescription == old  # a sent prescription never changes
    err = await refused(stub.ReplacePrescription(replace_request(), metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "NOT_CHANGEABLE"


async def test_cancel_is_for_the_issuing_facility_needs_a_reason_and_can_be_retried(prescribing):
    stub, tokens, _, _ = prescribing
    code = (await stub.IssuePrescription(issue_request(draft_for(random_citizen_id())),
                                         metadata=auth(tokens, "prescriber-hospital-a"))).prescription.code
    request = pb.CancelPrescriptionRequest(code=code, reason="issued in error")
    await refused(stub.CancelPrescription(request, metadata=auth(tokens, "prescriber-hospital-b")),
                  grpc.StatusCode.PERMISSION_DENIED)
    err = await refused(stub.CancelPrescription(pb.CancelPrescriptionRequest(code=code),
                                                metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["reason"]
    await refused(stub.CancelPrescription(pb.CancelPrescriptionRequest(code="01001zzzzzzz-c", reason="x"),
                                          metadata=auth(tokens, "prescriber-hospital-a")), grpc.StatusCode.NOT_FOUND)
    for _ in range(2):  # a retry after a lost response succeeds the same way
        reply = await stub.CancelPrescription(request, metadata=auth(tokens, "prescriber-hospital-a"))
        assert reply.status == common_pb2.PRESCRIPTION_STATUS_CANCELLED
    replace = pb.ReplacePrescriptionRequest(client_request_id="r-" + code, code=code, draft=f.draft(), reason="x")
    await refused(stub.ReplacePrescription(replace, metadata=auth(tokens, "prescriber-hospital-a")),
                  grpc.StatusCode.FAILED_PRECONDITION)


async def test_an_expired_prescription_can_no_longer_be_cancelled(prescribing):
    stub, tokens, clock, _ = prescribing
    code = (await stub.IssuePrescription(issue_request(draft_for(random_citizen_id())),
                                         metadata=auth(tokens, "prescriber-hospital-a"))).prescription.code
    clock.advance(days=5)  # 2026-12-05 in Vietnam: the window ended 2026-12-04
    got = await stub.GetPrescription(pb.GetPrescriptionRequest(code=code), metadata=auth(tokens, "pharmacy-a"))
    assert got.status == common_pb2.PRESCRIPTION_STATUS_EXPIRED
    await refused(stub.CancelPrescription(pb.CancelPrescriptionRequest(code=code, reason="x"),
                                          metadata=auth(tokens, "prescriber-hospital-a")),
                  grpc.StatusCode.FAILED_PRECONDITION)


async def test_the_medication_list_spans_facilities_and_follows_dispenses(prescribing, settings):
    stub, tokens, _, _ = prescribing
    patient = random_citizen_id()
    a = (await stub.IssuePrescription(issue_request(draft_for(patient)),
                                      metadata=auth(tokens, "prescriber-hospital-a"))).prescription
    b = (await stub.IssuePrescription(issue_request(draft_for(
        patient, [f.line("C08CA01-5T", quantity=30, per_day=1, days=30)], prescriber=f.PRESCRIBER_B,
        diagnoses=(("I10", "Hypertension"),))), metadata=auth(tokens, "prescriber-hospital-b"))).prescription
    await listed(stub, tokens, patient, a.code)
    meds = await listed(stub, tokens, patient, b.code)
    assert {(m.prescription_code, m.facility_code, m.remaining_days) for m in meds.medications} == {
        (a.code, "01001", 5), (b.code, "79001", 30)}

    dispensed = events_pb2.MedicationDispensed(
        dispense_id=str(uuid.uuid4()), prescription_code=b.code, pharmacy_code="PH0001",
        lines=[events_pb2.DispensedLine(line_number=1, drug_code="C08CA01-5T", quantity=10, unit_price_vnd=7900)])
    envelope = new_envelope(dispensed, key=b.code, producer="pharmacy", correlation_id="t",
                            occurred_at=utc_now())
    record = to_record(envelope, DISPENSES)
    producer = KafkaProducer(**settings.kafka_access("admin").kwargs(), acks="all")
    for _ in range(2):  # delivered twice, counted once
        producer.send(DISPENSES, key=record.key, value=record.value, headers=list(record.headers))
    producer.flush()
    producer.close()

    async def progressed():
        got = await stub.GetPrescription(pb.GetPrescriptionRequest(code=b.code), metadata=auth(tokens, "pharmacy-a"))
        return got if got.lines[0].dispensed else None
    got = await eventually(progressed, timeout=60, message="dispense projected")
    assert got.lines[0].dispensed == 10 and got.status == common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED
    meds = await stub.ListPatientMedications(
        pb.ListPatientMedicationsRequest(patient=common_pb2.PatientIdentifier(citizen_id=patient)),
        metadata=auth(tokens, "pharmacy-a"))
    entry = next(m for m in meds.medications if m.prescription_code == b.code)
    assert (entry.dispensed, entry.status) == (10, common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED)


async def test_listing_needs_a_patient(prescribing):
    stub, tokens, _, _ = prescribing
    err = await refused(stub.ListPatientMedications(pb.ListPatientMedicationsRequest(),
                                                    metadata=auth(tokens, "prescriber-hospital-a")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["patient"]


async def test_an_hiv_prescription_shows_the_patient_only_to_the_issuing_facility_and_the_insurer(prescribing):
    stub, tokens, _, _ = prescribing
    issued = await stub.IssuePrescription(issue_request(draft_for(
        random_citizen_id(), [f.line("J05AR27-TLD", quantity=30, per_day=1, days=30)],
        diagnoses=(("B20", "HIV disease"),))), metadata=auth(tokens, "prescriber-hospital-a"))
    request = pb.GetPrescriptionRequest(code=issued.prescription.code)
    for allowed in ("prescriber-hospital-a", "insurer"):   # the treating team; the fund, for claims
        own = await stub.GetPrescription(request, metadata=auth(tokens, allowed))
        assert own.prescription.patient.identifier == issued.prescription.patient.identifier, allowed
    for other in ("pharmacy-a", "prescriber-hospital-b"):
        seen = await stub.GetPrescription(request, metadata=auth(tokens, other))
        patient = seen.prescription.patient
        assert not patient.HasField("identifier") and patient.name == "" and patient.address == ""
        assert seen.prescription.lines == issued.prescription.lines
