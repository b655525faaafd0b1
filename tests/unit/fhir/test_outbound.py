"""The platform's answers as FHIR R4 resources: each parses as its R4 model, and carries what
its reader acts on."""
from datetime import date, datetime, timezone
from decimal import Decimal

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.insurance.v1 import insurance_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from services.fhir import outbound
from services.fhir import systems as S
from services.fhir.inbound import read_bundle
from tests.support.fhir import dumps, example, loads, parse

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)


def issued() -> common_pb2.Prescription:
    """The README's Bundle as the prescribing service would issue it."""
    draft = read_bundle(example(), date(2026, 11, 30)).request.draft
    rx = common_pb2.Prescription(code="01001ab3k9x2-c", type=draft.type, patient=draft.patient,
                                 diagnoses=draft.diagnoses, prescriber=draft.prescriber, facility_code="01001",
                                 lines=draft.lines, advice=draft.advice, valid_until=common_pb2.Date(year=2026, month=12, day=4))
    rx.issued_at.FromDatetime(NOW)
    for line in rx.lines:
        line.unit, line.drug_name = "tablet", f"drug {line.line_number}"
    rx.lines[0].dose_per_administration = "0.25"
    return rx


def test_a_prescription_is_one_medication_request_per_line_grouped_by_its_code():
    rx = issued()
    resources = outbound.medication_requests(rx, common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED,
                                             {1: (4, 10), 2: (0, 12)}, signature_verified=True)
    models = [parse(r) for r in resources]
    assert [m.id for m in models] == ["01001ab3k9x2-c-1", "01001ab3k9x2-c-2"]
    assert {(m.groupIdentifier.system, m.groupIdentifier.value) for m in models} == {(S.PRESCRIPTION_CODE, rx.code)}
    first = models[0]
    assert first.status == "active" and first.intent == "order"
    assert first.subject.identifier.value == "001203004567" and first.subject.identifier.system == S.NATIONAL_ID
    assert first.dosageInstruction[0].doseAndRate[0].doseQuantity.value == Decimal("0.25")
    assert first.dosageInstruction[0].timing.repeat.frequency == 2
    assert first.dispenseRequest.quantity.value == 14
    assert first.dispenseRequest.validityPeriod.end == date(2026, 12, 4)
    assert first.reasonCode[0].coding[0].code == "J02.9"
    assert first.note[0].text == "Uống nhiều nước" and not models[1].note
    ext = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in resources[0]["extension"]}
    assert (ext[S.EXT_DISPENSED], ext[S.EXT_REMAINING], ext[S.EXT_SIGNATURE_VERIFIED]) == (4, 10, True)
    assert '"value": 0.25' in dumps(resources[0])   # a decimal on the wire, never a string


def test_status_replaced_and_hidden_identity():
    rx = issued()
    replaced = outbound.medication_requests(rx, common_pb2.PRESCRIPTION_STATUS_REPLACED, successor="01001zzzzzzz-c")
    assert {r["status"] for r in replaced} == {"stopped"}
    assert replaced[0]["statusReason"]["text"] == "replaced by 01001zzzzzzz-c"
    hidden = outbound.medication_requests(rx, common_pb2.PRESCRIPTION_STATUS_ACTIVE, hidden=True)[0]
    parse(hidden)
    assert "identifier" not in hidden["subject"] and "Nguyễn" not in dumps(hidden)
    assert hidden["subject"]["extension"][0]["valueCode"] == "masked"
    for status, code in ((common_pb2.PRESCRIPTION_STATUS_COMPLETED, "completed"),
                         (common_pb2.PRESCRIPTION_STATUS_CANCELLED, "cancelled"),
                         (common_pb2.PRESCRIPTION_STATUS_EXPIRED, "stopped")):
        assert outbound.medication_requests(rx, status)[0]["status"] == code


def test_sales_are_medication_dispenses_pointing_at_their_line():
    listing = pharmacy_pb2.ListDispensesResponse(code="01001ab3k9x2-c")
    kept = listing.dispenses.add(dispense_id="d-1", pharmacy_code="PH0001", lines=[
        pharmacy_pb2.DispenseLine(line_number=2, drug_code="N02BE01-500T", quantity=6, unit_price_vnd=1_050,
                                  substitution=True)])
    kept.dispensed_at.FromDatetime(NOW)
    undone = listing.dispenses.add(dispense_id="d-2", pharmacy_code="PH0002",
                                   lines=[pharmacy_pb2.DispenseLine(line_number=1, drug_code="J01CR02-625T", quantity=2)])
    undone.dispensed_at.FromDatetime(NOW)
    undone.reversed_at.FromDatetime(NOW)
    resources = outbound.medication_dispenses(listing)
    models = [parse(r) for r in resources]
    assert [(m.id, m.status, m.quantity.value) for m in models] == [("d-1-2", "completed", 6), ("d-2-1", "cancelled", 2)]
    assert models[0].authorizingPrescription[0].reference == "MedicationRequest/01001ab3k9x2-c-2"
    assert models[0].substitution.wasSubstituted is True
    assert models[0].performer[0].actor.identifier.value == "PH0001"
    assert resources[0]["extension"][0]["valueMoney"] == {"value": 1_050, "currency": "VND"}


def test_an_adjudicated_claim_is_a_claim_response_with_the_fund_s_and_patient_s_shares():
    claim = insurance_pb2.GetClaimResponse(claim_id="c-42", outcome=events_pb2.CLAIM_OUTCOME_PARTIAL)
    a = claim.adjudication
    a.card_code, a.pharmacy_code, a.prescription_code = "DN4010123456789", "PH0001", "01001ab3k9x2-c"
    a.fund_total_vnd, a.patient_total_vnd, a.payee = 16_800, 13_200, events_pb2.PAYEE_FACILITY
    a.adjudicated_at.FromDatetime(NOW)
    a.lines.add(line_number=1, quantity=14, unit_price_vnd=1_500, insured_vnd=21_000, fund_vnd=16_800,
                patient_vnd=4_200, copay_vnd=4_200, payment_ratio=100, reason_code="PRICE_ABOVE_REFERENCE")
    a.lines.add(line_number=2, quantity=12, unit_price_vnd=750, insured_vnd=0, fund_vnd=0, patient_vnd=9_000,
                reason_code="NOT_COVERED")
    resource = outbound.claim_response(claim)
    model = parse(resource)
    assert (model.outcome, model.status, model.use) == ("partial", "active", "claim")
    totals = {t.category.coding[0].code: t.amount.value for t in model.total}
    assert totals == {"submitted": 30_000, "eligible": 21_000, "benefit": 16_800, "patient": 13_200}
    line = {adj.category.coding[0].code: adj for adj in model.item[0].adjudication}
    assert line["eligible"].reason.coding[0].code == "PRICE_ABOVE_REFERENCE"
    assert line["benefit"].amount.value == 16_800 and line["benefit"].amount.currency == "VND"
    assert model.payeeType.coding[0].code == "provider"
    reversed_claim = outbound.claim_response(insurance_pb2.GetClaimResponse(
        claim_id="c-43", outcome=events_pb2.CLAIM_OUTCOME_REVERSED))
    assert parse(reversed_claim).status == "cancelled"


def test_eligibility_is_a_coverage_eligibility_response():
    yes = insurance_pb2.CheckEligibilityResponse(
        eligible=True, card_code="DN4010123456789", benefit_percent=80,
        valid_from=common_pb2.Date(year=2026, month=1, day=1), valid_to=common_pb2.Date(year=2026, month=12, day=31))
    model = parse(outbound.eligibility_response(yes, "001203004567", "01001", date(2026, 11, 30), "chk1", NOW))
    insurance = model.insurance[0]
    assert insurance.inforce is True and insurance.coverage.identifier.value == "DN4010123456789"
    assert insurance.item[0].benefit[0].allowedUnsignedInt == 20   # the patient's co-payment
    exempt = insurance_pb2.CheckEligibilityResponse(eligible=True, card_code="X", benefit_percent=80, copay_exempt=True)
    assert outbound.eligibility_response(exempt, "X", "", date(2026, 11, 30), "c", NOW)[
        "insurance"][0]["item"][0]["benefit"][0]["allowedUnsignedInt"] == 0
    no = parse(outbound.eligibility_response(insurance_pb2.CheckEligibilityResponse(eligible=False, reason="CARD_EXPIRED"),
                                             "DN4010123456789", "01001", date(2026, 11, 30), "chk2", NOW))
    assert no.insurance[0].inforce is False and no.error[0].code.coding[0].code == "CARD_EXPIRED"


def test_warnings_and_bundles():
    reply = prescribing_pb2.IssuePrescriptionResponse(warnings=[prescribing_pb2.SafetyFinding(
        rule="interaction", severity=prescribing_pb2.SEVERITY_MODERATE, drug_codes=["N02BE01-500T"], message="m")])
    found = outbound.warnings(reply, {"N02BE01-500T": "Bundle.entry[5].resource.medicationCodeableConcept"})
    outcome = parse({**outbound.outcome(found), "id": "w"})
    assert outcome.issue[0].severity == "warning" and outcome.issue[0].details.coding[0].code == "INTERACTION"
    assert outcome.issue[0].expression == ["Bundle.entry[5].resource.medicationCodeableConcept"]
    resources = outbound.medication_requests(issued(), common_pb2.PRESCRIPTION_STATUS_ACTIVE)
    search = parse(outbound.searchset("http://h/fhir", resources, "http://h/fhir/MedicationRequest?group-identifier=x"))
    assert search.total == 2 and search.entry[0].fullUrl == "http://h/fhir/MedicationRequest/01001ab3k9x2-c-1"
    assert parse(outbound.collection("http://h/fhir", resources, NOW)).type == "collection"


def test_what_the_facade_emits_reads_back_into_the_same_lines():
    """Round trip: the MedicationRequests of an issued prescription, put back in the Bundle in
    place of the hospital's, read into the same drug lines."""
    rx = issued()
    bundle = example()
    people = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "MedicationRequest"]
    bundle["entry"] = people + [{"resource": loads(dumps(r))}
                                for r in outbound.medication_requests(rx, common_pb2.PRESCRIPTION_STATUS_ACTIVE)]
    again = read_bundle(bundle, date(2026, 11, 30)).request.draft
    fields = lambda l: (l.line_number, l.drug_code, l.quantity, l.dose_per_administration,  # noqa: E731
                        l.administrations_per_day, l.days, l.directions)
    assert [fields(l) for l in again.lines] == [fields(l) for l in rx.lines]
    assert again.advice == rx.advice and again.type == rx.type
