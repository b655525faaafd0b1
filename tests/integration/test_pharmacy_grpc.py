"""PharmacyService over a real channel: every RPC and error path."""
from datetime import date

import grpc
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2 as pb

from services.common.events import decode, new_envelope, payload_of
from services.pharmacy.worker import ledger_projection
from tests.support.insurance_fixtures import new_member
from tests.support.pharmacy_fixtures import ISSUED_AT, issued_event, ready, sale, signed_prescription
from tests.support.prescribing_fixtures import auth
from tests.support.rpc import fields_of, reason_of, refused

COMPLETED = common_pb2.PRESCRIPTION_STATUS_COMPLETED


async def test_lookup_shows_each_line_the_window_and_the_signature(pharmacy):
    stub, tokens, _, handlers = pharmacy
    rx = await ready(handlers)
    reply = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code.upper()),
                                          metadata=auth(tokens, "pharmacy-b"))
    assert reply.signature_verified and not reply.identity_hidden
    assert reply.status == common_pb2.PRESCRIPTION_STATUS_ACTIVE
    assert [(l.line_number, l.prescribed, l.dispensed, l.remaining) for l in reply.lines] == [(1, 20, 0, 20), (2, 14, 0, 14)]
    assert (reply.first_dispense_deadline.month, reply.first_dispense_deadline.day) == (12, 4)
    assert reply.prescription.patient.identifier.citizen_id == rx.patient.identifier.citizen_id
    await refused(stub.LookupPrescription(pb.LookupPrescriptionRequest(code="01001zzzzzzz-c"),
                                          metadata=auth(tokens, "pharmacy-b")), grpc.StatusCode.NOT_FOUND)
    err = await refused(stub.LookupPrescription(pb.LookupPrescriptionRequest(code="x"),
                                                metadata=auth(tokens, "pharmacy-b")), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["code"]


async def test_an_hiv_prescription_is_looked_up_without_the_patients_identity(pharmacy):
    stub, tokens, _, handlers = pharmacy
    rx = await ready(handlers, ("J05AR27-TLD", 30), diagnoses=("B20",))
    reply = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=auth(tokens, "pharmacy-a"))
    assert reply.identity_hidden and reply.signature_verified  # verified on the whole record, shown masked
    patient = reply.prescription.patient
    assert not patient.HasField("identifier") and patient.name == "" and patient.address == ""


async def test_partial_sales_at_two_pharmacies_then_the_rest_is_refused(pharmacy):
    stub, tokens, _, handlers = pharmacy
    rx = await ready(handlers)
    first = await stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 12, 1_050, False)),
                                            metadata=auth(tokens, "pharmacy-a"))
    assert [(l.quantity, l.remaining) for l in first.lines] == [(12, 8)]
    assert first.status == common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED
    assert first.patient_total_vnd == 12 * 1_050 and first.fund_total_vnd == 0 and first.claim_id == ""
    second = await stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 8, 1_050, False),
                                                  (2, "J01CR02-1GT", 14, 16_200, False)),
                                             metadata=auth(tokens, "pharmacy-b"))
    assert [l.remaining for l in second.lines] == [0, 0] and second.status == COMPLETED
    err = await refused(stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 1, 1_050, False)),
                                                  metadata=auth(tokens, "pharmacy-a")),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "QUANTITY_EXCEEDS_REMAINING" and fields_of(err) == ["lines[0]"]


async def test_a_bhyt_sale_returns_who_pays_what(pharmacy, store):
    stub, tokens, _, handlers = pharmacy
    member = new_member(4)
    await store.upsert_member(member)
    rx = await ready(handlers, ("B01AF01-20T", 30), ("M01AX05-500C", 60), patient=member.citizen_id)
    reply = await stub.DispensePrescription(sale(rx.code, (1, "B01AF01-20T", 30, 58_000, False),
                                                 (2, "M01AX05-500C", 60, 1_600, False),
                                                 card=member.cards[0].card_code),
                                            metadata=auth(tokens, "pharmacy-a"))
    # Xarelto ratio 50: insured 870,000, fund 80% 696,000; glucosamine is not covered
    assert [(l.insured_vnd, l.fund_vnd, l.patient_vnd) for l in reply.lines] == [(870_000, 696_000, 1_044_000),
                                                                                (0, 0, 96_000)]
    assert (reply.fund_total_vnd, reply.patient_total_vnd) == (696_000, 1_140_000) and reply.claim_id
    err = await refused(stub.DispensePrescription(sale((await ready(handlers)).code, (1, "N02BE01-500T", 1, 1, False),
                                                       card="DN4019999999999"), metadata=auth(tokens, "pharmacy-a")),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "BHYT_NOT_ELIGIBLE"
    someone_else = new_member(4)
    await store.upsert_member(someone_else)
    carded = await ready(handlers, ("B01AF01-20T", 30), card=member.cards[0].card_code, patient=member.citizen_id)
    err = await refused(stub.DispensePrescription(sale(carded.code, (1, "B01AF01-20T", 30, 58_000, False),
                                                       card=someone_else.citizen_id),
                                                  metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "BHYT_CARD_NOT_PATIENTS" and fields_of(err) == ["bhyt_card"]
    by_citizen_id = await stub.DispensePrescription(sale(carded.code, (1, "B01AF01-20T", 30, 58_000, False),
                                                         card=member.citizen_id), metadata=auth(tokens, "pharmacy-a"))
    assert by_citizen_id.fund_total_vnd == 696_000  # the patient's own card, named by citizen ID


async def test_a_card_is_billed_only_for_its_own_member_s_prescription(pharmacy, store):
    """Hole: a prescription that records no card took any eligible card at the counter."""
    stub, tokens, _, handlers = pharmacy
    patient, stranger = new_member(4), new_member(4)
    for m in (patient, stranger):
        await store.upsert_member(m)
    rx = await ready(handlers, ("B01AF01-20T", 30), patient=patient.citizen_id)   # no card recorded
    for identifier in (stranger.cards[0].card_code, stranger.member_id, stranger.citizen_id):
        err = await refused(stub.DispensePrescription(sale(rx.code, (1, "B01AF01-20T", 30, 58_000, False),
                                                           card=identifier), metadata=auth(tokens, "pharmacy-a")),
                            grpc.StatusCode.FAILED_PRECONDITION)
        assert reason_of(err) == "BHYT_CARD_NOT_PATIENTS" and fields_of(err) == ["bhyt_card"], identifier
    own = await stub.DispensePrescription(sale(rx.code, (1, "B01AF01-20T", 10, 58_000, False),
                                               card=patient.member_id), metadata=auth(tokens, "pharmacy-a"))
    assert own.claim_id and own.fund_total_vnd > 0


async def test_the_fund_pays_at_most_the_reference_price(pharmacy, store):
    """Hole: the fund paid whatever unit price the pharmacy declared."""
    stub, tokens, _, handlers = pharmacy
    member = new_member(4)
    await store.upsert_member(member)
    rx = await ready(handlers, ("N02BE01-500T", 20), patient=member.citizen_id)
    reply = await stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 20, 10_000_000, False),
                                                 card=member.cards[0].card_code), metadata=auth(tokens, "pharmacy-a"))
    # Demo A's last winning bid for paracetamol 500 mg is 1,050 a tablet: the fund's share is
    # computed on 20 x 1,050 = 21,000 (under 15% of the base salary: paid in full); the
    # patient pays the other 199,979,000 of the 200,000,000 declared.
    assert [(l.insured_vnd, l.fund_vnd, l.patient_vnd) for l in reply.lines] == [(21_000, 21_000, 199_979_000)]


async def test_a_retry_with_the_same_key_returns_the_first_result(pharmacy):
    stub, tokens, _, handlers = pharmacy
    rx = await ready(handlers)
    request = sale(rx.code, (1, "N02BE01-500T", 5, 1_050, False), key="pos-7-receipt-991")
    first = await stub.DispensePrescription(request, metadata=auth(tokens, "pharmacy-a"))
    again = await stub.DispensePrescription(request, metadata=auth(tokens, "pharmacy-a"))
    assert again == first
    other = sale(rx.code, (1, "N02BE01-500T", 6, 1_050, False), key="pos-7-receipt-991")
    err = await refused(stub.DispensePrescription(other, metadata=auth(tokens, "pharmacy-a")),
                        grpc.StatusCode.ALREADY_EXISTS)
    assert fields_of(err) == ["idempotency_key"]
    lookup = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=rx.code), metadata=auth(tokens, "pharmacy-a"))
    assert lookup.lines[0].remaining == 15  # sold once


async def test_substitution_is_for_pharmacists_and_equivalent_drugs_only(pharmacy):
    stub, tokens, _, handlers = pharmacy
    rx = await ready(handlers)
    equivalent = sale(rx.code, (1, "N02BE01-500E", 10, 2_600, True))
    await refused(stub.DispensePrescription(equivalent, metadata=auth(tokens, "pharmacy-b")),
                  grpc.StatusCode.PERMISSION_DENIED)
    ok = await stub.DispensePrescription(equivalent, metadata=auth(tokens, "pharmacy-a"))
    assert ok.lines[0].remaining == 10
    err = await refused(stub.DispensePrescription(sale(rx.code, (1, "N02BE01-650T", 5, 900, True)),
                                                  metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    assert reason_of(err) == "SUBSTITUTE_NOT_EQUIVALENT" and fields_of(err) == ["lines[0].drug_code"]
    err = await refused(stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500E", 5, 900, False)),
                                                  metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    assert reason_of(err) == "DRUG_NOT_PRESCRIBED"


async def test_the_window_cancellation_batches_and_signature_are_enforced(pharmacy):
    stub, tokens, clock, handlers = pharmacy
    late = await ready(handlers)
    clock.advance(days=5)  # 2026-12-05 in Vietnam, the window ended on 2026-12-04
    err = await refused(stub.DispensePrescription(sale(late.code, (1, "N02BE01-500T", 1, 1, False)),
                                                  metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "VALIDITY_WINDOW_ENDED"
    clock.advance(days=-5)

    cancelled = await ready(handlers)
    await ledger_projection(handlers)(new_envelope(events_pb2.PrescriptionCancelled(code=cancelled.code, reason="x"),
                                                      key=cancelled.code, producer="t", correlation_id="t",
                                                      occurred_at=ISSUED_AT))
    err = await refused(stub.DispensePrescription(sale(cancelled.code, (1, "N02BE01-500T", 1, 1, False)),
                                                  metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "PRESCRIPTION_CANCELLED"

    batched = await ready(handlers, ("N02AA01-30T", 20, 1), ("N02AA01-30T", 20, 2),
                          rx_type=common_pb2.PRESCRIPTION_TYPE_NARCOTIC, valid_until=date(2026, 12, 19),
                          batches=[(1, date(2026, 11, 30), date(2026, 12, 9)), (2, date(2026, 12, 10), date(2026, 12, 19))])
    ok = await stub.DispensePrescription(sale(batched.code, (1, "N02AA01-30T", 20, 16_000, False)),
                                         metadata=auth(tokens, "pharmacy-a"))
    assert ok.lines[0].remaining == 0
    err = await refused(stub.DispensePrescription(sale(batched.code, (2, "N02AA01-30T", 20, 16_000, False)),
                                                  metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "OUTSIDE_BATCH_DATES" and fields_of(err) == ["lines[0]"]

    forged = signed_prescription([("N02BE01-500T", 20)])
    forged.lines[0].quantity = 200  # changed after signing
    await ledger_projection(handlers)(issued_event(forged))
    err = await refused(stub.DispensePrescription(sale(forged.code, (1, "N02BE01-500T", 100, 1, False)),
                                                  metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "SIGNATURE_INVALID"
    looked = await stub.LookupPrescription(pb.LookupPrescriptionRequest(code=forged.code), metadata=auth(tokens, "pharmacy-a"))
    assert not looked.signature_verified


async def test_requests_that_cannot_be_valid(pharmacy):
    stub, tokens, _, handlers = pharmacy
    rx = await ready(handlers)
    cases = [
        (pb.DispensePrescriptionRequest(code=rx.code, self_pay=True, lines=[pb.DispenseLine(line_number=1, quantity=1)]),
         "idempotency_key"),
        (pb.DispensePrescriptionRequest(idempotency_key="k", code=rx.code, lines=[pb.DispenseLine(line_number=1, quantity=1)]),
         "payment"),
        (pb.DispensePrescriptionRequest(idempotency_key="k", code=rx.code, self_pay=True), "lines"),
        (sale(rx.code, (1, "N02BE01-500T", 0, 1, False)), "lines[0].quantity"),
        (sale(rx.code, (9, "N02BE01-500T", 1, 1, False)), "lines[0].line_number"),
    ]
    for request, field in cases:
        err = await refused(stub.DispensePrescription(request, metadata=auth(tokens, "pharmacy-a")),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert fields_of(err) == [field]
    await refused(stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 1, 1, False)),
                                            metadata=auth(tokens, "operator")), grpc.StatusCode.PERMISSION_DENIED)


async def test_reversal_by_the_same_pharmacy_within_24_hours_restores_once(pharmacy):
    stub, tokens, clock, handlers = pharmacy
    rx = await ready(handlers)
    sold = await stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 20, 1_050, False)),
                                           metadata=auth(tokens, "pharmacy-a"))
    request = pb.ReverseDispenseRequest(dispense_id=sold.dispense_id, reason="wrong patient")
    await refused(stub.ReverseDispense(request, metadata=auth(tokens, "pharmacy-b")), grpc.StatusCode.PERMISSION_DENIED)
    err = await refused(stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id=sold.dispense_id),
                                             metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["reason"]
    await refused(stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id="nope", reason="x"),
                                       metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    await refused(stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id=f"d-{rx.code}-{'0' * 16}", reason="x"),
                                       metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.NOT_FOUND)
    for _ in range(2):  # a retried reversal restores once
        reply = await stub.ReverseDispense(request, metadata=auth(tokens, "pharmacy-a"))
        assert reply.lines[0].remaining == 20
    late = await stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 5, 1_050, False)),
                                           metadata=auth(tokens, "pharmacy-a"))
    clock.advance(hours=24, seconds=1)
    err = await refused(stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id=late.dispense_id, reason="x"),
                                             metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "REVERSAL_WINDOW_ENDED"


async def test_the_sales_of_a_code_are_listed_for_pharmacies_and_its_issuing_facility(pharmacy):
    stub, tokens, clock, handlers = pharmacy
    rx = await ready(handlers)
    first = await stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 12, 1_050, False)),
                                            metadata=auth(tokens, "pharmacy-a"))
    clock.advance(hours=1)
    second = await stub.DispensePrescription(sale(rx.code, (1, "N02BE01-500T", 3, 1_100, False),
                                                  (2, "J01CR02-1GT", 14, 16_200, False)),
                                             metadata=auth(tokens, "pharmacy-b"))
    await stub.ReverseDispense(pb.ReverseDispenseRequest(dispense_id=first.dispense_id, reason="returned"),
                               metadata=auth(tokens, "pharmacy-a"))
    for reader in ("pharmacy-b", "prescriber-hospital-a", "operator"):
        reply = await stub.ListDispenses(pb.ListDispensesRequest(code=rx.code.upper()), metadata=auth(tokens, reader))
        assert reply.code == rx.code
        assert [(d.dispense_id, d.pharmacy_code) for d in reply.dispenses] == [(first.dispense_id, "PH0001"),
                                                                               (second.dispense_id, "PH0002")]
        assert [[(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd) for l in d.lines]
                for d in reply.dispenses] == [[(1, "N02BE01-500T", 12, 1_050)],
                                              [(1, "N02BE01-500T", 3, 1_100), (2, "J01CR02-1GT", 14, 16_200)]]
        assert reply.dispenses[0].HasField("reversed_at") and not reply.dispenses[1].HasField("reversed_at")
        gap = reply.dispenses[1].dispensed_at.ToDatetime() - reply.dispenses[0].dispensed_at.ToDatetime()
        assert gap.total_seconds() == 3600
    err = await refused(stub.ListDispenses(pb.ListDispensesRequest(code=rx.code),
                                           metadata=auth(tokens, "prescriber-hospital-b")),
                        grpc.StatusCode.PERMISSION_DENIED)
    assert reason_of(err) == "NOT_ISSUING_FACILITY"
    await refused(stub.ListDispenses(pb.ListDispensesRequest(code=rx.code), metadata=auth(tokens, "insurer")),
                  grpc.StatusCode.PERMISSION_DENIED)
    await refused(stub.ListDispenses(pb.ListDispensesRequest(code="01001zzzzzzz-c"), metadata=auth(tokens, "pharmacy-a")),
                  grpc.StatusCode.NOT_FOUND)
    assert (await stub.ListDispenses(pb.ListDispensesRequest(code=(await ready(handlers)).code),
                                     metadata=auth(tokens, "pharmacy-a"))).dispenses == []


async def outbox_events(handlers, code):
    """The events the sales of `code` appended to the pharmacy's outbox, by payload kind."""
    store = handlers.deps.store
    found = []
    for stream in store.layout.streams():
        for _, fields in await store.redis.xrange(stream):
            envelope = decode(fields[b"value"])
            message = payload_of(envelope)
            if getattr(message, "prescription_code", "") == code:
                found.append((envelope.WhichOneof("payload"), message))
    return found


async def test_at_a_retail_pharmacy_the_fund_pays_only_a_flagged_line_and_the_patient_not_the_pharmacy(pharmacy,
                                                                                                       store):
    """Who the fund pays: a retail pharmacy (PH0002) sells for cash; a line the prescriber marked
    not available at the facility is reimbursed to the patient, capped at the facility's price."""
    stub, tokens, _, handlers = pharmacy
    member = new_member(4)
    await store.upsert_member(member)
    rx = await ready(handlers, ("A10BA02-500T", 60), ("N02BE01-500T", 20), patient=member.citizen_id,
                     not_available=(1,))
    both = sale(rx.code, (1, "A10BA02-500T", 60, 1_500, False), (2, "N02BE01-500T", 20, 1_050, False),
                card=member.cards[0].card_code)
    err = await refused(stub.DispensePrescription(both, metadata=auth(tokens, "pharmacy-b")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert reason_of(err) == "INVOICE_REQUIRED" and fields_of(err) == ["invoice_number"]
    both.invoice_number = "HD-0001"
    reply = await stub.DispensePrescription(both, metadata=auth(tokens, "pharmacy-b"))
    # metformin capped at its national price 1,200: 60 x 1,200 x 80% = 57,600 reimbursable; the
    # patient pays both lines in full at the counter; paracetamol is RETAIL_NOT_COVERED
    assert (reply.claim_id, reply.fund_total_vnd, reply.patient_total_vnd) == ("", 0, 90_000 + 21_000)
    assert [l.reimbursable_vnd for l in reply.lines] == [57_600, 0] and reply.reimbursable_total_vnd == 57_600
    assert reply.reimbursement_id.startswith("r-")
    events = await outbox_events(handlers, rx.code)
    kinds = [kind for kind, _ in events]
    assert kinds == ["medication_dispensed", "reimbursement_requested"], kinds
    dispensed, requested = events[0][1], events[1][1]
    assert dispensed.payer == events_pb2.PAYER_SELF and dispensed.invoice_number == "HD-0001"
    assert dispensed.reimbursement_id == reply.reimbursement_id and not dispensed.claim_id
    assert [(l.line_number, l.fund_vnd) for l in requested.lines] == [(1, 57_600)]
    assert (requested.invoice_number, requested.member_id) == ("HD-0001", member.member_id)

    plain = await ready(handlers, ("N02BE01-500T", 20), patient=member.citizen_id)
    cash = await stub.DispensePrescription(sale(plain.code, (1, "N02BE01-500T", 20, 1_050, False),
                                                card=member.cards[0].card_code), metadata=auth(tokens, "pharmacy-b"))
    assert (cash.claim_id, cash.reimbursement_id, cash.fund_total_vnd, cash.patient_total_vnd) == ("", "", 0, 21_000)
    assert [kind for kind, _ in await outbox_events(handlers, plain.code)] == ["medication_dispensed"]
