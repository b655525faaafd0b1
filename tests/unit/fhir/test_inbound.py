"""A FHIR prescription Bundle into the gRPC request: what each element becomes, what a
malformed Bundle is told, and which element a refused request field came from."""
import copy
from datetime import date
from decimal import Decimal

import pytest
from eprescription.common.v1 import common_pb2

from services.fhir import systems as S
from services.fhir.inbound import BundleRefused, read_bundle
from tests.support.fhir import entry, example, parse

TODAY = date(2026, 11, 30)


def refusal(bundle) -> list:
    with pytest.raises(BundleRefused) as caught:
        read_bundle(bundle, TODAY)
    return caught.value.issues


def test_the_readme_bundle_is_valid_fhir_and_becomes_the_same_request_as_the_grpc_example():
    bundle = example()
    parse(bundle)
    sub = read_bundle(bundle, TODAY)
    request, draft = sub.request, sub.request.draft
    assert request.client_request_id == "his-01001-visit-778813"
    assert draft.type == common_pb2.PRESCRIPTION_TYPE_ORDINARY
    p = draft.patient
    assert (p.identifier.citizen_id, p.bhyt_card, p.name, p.sex, p.address) == (
        "001203004567", "DN4010123456789", "Nguyễn Văn An", common_pb2.SEX_MALE, "12 Phố Huế, Hà Nội")
    assert (p.date_of_birth.year, p.date_of_birth.month, p.date_of_birth.day) == (1980, 5, 17)
    assert p.age_in_months == 0   # an adult: the rules ask it only of children
    assert (draft.prescriber.certificate_number, draft.prescriber.linkage_code, draft.prescriber.facility_code) == (
        "001234/HNO-CCHN", "BS01001001", "01001")
    assert [(d.icd10, d.text) for d in draft.diagnoses] == [("J02.9", "Viêm họng cấp")]
    assert [(l.line_number, l.drug_code, l.quantity, l.dose_per_administration, l.administrations_per_day, l.days,
             l.directions) for l in draft.lines] == [
        (1, "J01CR02-625T", 14, "1", 2, 7, "uống sau ăn"), (2, "N02BE01-500T", 12, "1", 3, 4, "uống khi sốt trên 38.5")]
    assert draft.advice == "Uống nhiều nước"


def test_a_refused_field_is_named_by_the_element_it_came_from():
    sub = read_bundle(example(), TODAY)
    assert sub.expression_of("draft.lines[1].quantity") == "Bundle.entry[5].resource.dispenseRequest.quantity.value"
    assert sub.expression_of("draft.lines[0].drug_code") == \
        "Bundle.entry[4].resource.medicationCodeableConcept.coding[0].code"
    assert sub.expression_of("draft.patient.identifier.citizen_id") == "Bundle.entry[0].resource.identifier[0].value"
    assert sub.expression_of("draft.patient.bhyt_card") == "Bundle.entry[0].resource.identifier[1].value"
    assert sub.expression_of("draft.prescriber.facility_code") == "Bundle.entry[2].resource.identifier[0].value"
    assert sub.expression_of("draft.diagnoses[0].icd10") == "Bundle.entry[3].resource.code.coding[0].code"
    # a field without its own origin: the nearest enclosing one; nothing at all: the Bundle
    assert sub.expression_of("draft.lines[1].strength") == "Bundle.entry[5].resource"
    assert sub.expression_of("draft.patient.guardian.name") == "Bundle.entry[0].resource"
    assert sub.expression_of("nonsense") == "Bundle"
    assert sub.drugs["N02BE01-500T"] == "Bundle.entry[5].resource.medicationCodeableConcept"


def test_a_child_s_age_weight_and_guardian_come_from_the_bundle():
    bundle = example()
    patient = entry(bundle, "Patient")
    patient["birthDate"] = "2024-02-29"
    bundle["entry"] += [
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": S.LOINC, "code": S.BODY_WEIGHT}]},
                      "valueQuantity": {"value": Decimal("12.5"), "unit": "kg", "system": S.UCUM, "code": "kg"}}},
        {"resource": {"resourceType": "RelatedPerson", "patient": {"reference": "urn:uuid:x"},
                      "identifier": [{"system": S.NATIONAL_ID, "value": "001180001234"}],
                      "name": [{"family": "Nguyễn", "given": ["Thị", "Mẹ"]}],
                      "relationship": [{"text": "mother"}]}},
        {"resource": {"resourceType": "AllergyIntolerance", "patient": {"reference": "urn:uuid:x"},
                      "code": {"text": "amoxicillin"}}}]
    parse(bundle)
    p = read_bundle(bundle, TODAY).request.draft.patient
    assert p.age_in_months == 33   # 2024-02-29 to 2026-11-30
    assert p.weight_grams == 12_500
    assert (p.guardian.name, p.guardian.identifier.citizen_id, p.guardian.relationship) == (
        "Nguyễn Thị Mẹ", "001180001234", "mother")
    assert list(p.allergies) == ["amoxicillin"]


def test_dosing_in_hours_prescription_level_flags_and_the_override_reason():
    bundle = example()
    order = entry(bundle, "MedicationRequest", 1)
    order["dosageInstruction"][0]["timing"]["repeat"].update(frequency=1, period=8, periodUnit="h")
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = Decimal("0.5")
    first = entry(bundle, "MedicationRequest", 0)
    first["extension"] = [{"url": S.EXT_RETURN_VISIT_DAYS, "valueInteger": 7},
                          {"url": S.EXT_ACUTE, "valueBoolean": True}]
    order["extension"] = [{"url": S.EXT_NOT_AVAILABLE, "valueBoolean": True},
                          {"url": S.EXT_NOT_AVAILABLE_REASON, "valueString": "out of stock at the facility"}]
    bundle["entry"].append({"resource": {"resourceType": "DetectedIssue", "status": "final",
                                         "mitigation": [{"action": {"text": "benefit outweighs the risk"}}]}})
    bundle["entry"].append({"resource": {"resourceType": "Encounter", "status": "finished",
                                         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                   "code": "AMB"},
                                         "identifier": [{"system": S.VISIT, "value": "V-2026-1"}],
                                         "extension": [{"url": S.EXT_OTHER_COSTS,
                                                        "valueMoney": {"value": 150000, "currency": "VND"}}]}})
    parse(bundle)
    sub = read_bundle(bundle, TODAY)
    draft = sub.request.draft
    line = draft.lines[1]
    assert (line.administrations_per_day, line.dose_per_administration) == (3, "0.5")
    assert (line.not_available_at_facility, line.not_available_reason) == (True, "out of stock at the facility")
    assert (draft.return_visit_days, draft.acute) == (7, True)
    assert sub.request.override_reason == "benefit outweighs the risk"
    assert (draft.encounter.id, draft.encounter.other_costs_vnd) == ("V-2026-1", 150_000)
    assert sub.expression_of("draft.encounter.other_costs_vnd").endswith(".extension[0].valueMoney")


def test_a_malformed_bundle_is_told_every_problem_with_its_element():
    bundle = example()
    order = entry(bundle, "MedicationRequest", 0)
    order["dispenseRequest"]["quantity"]["value"] = Decimal("1.5")
    order["intent"] = "plan"
    entry(bundle, "Patient")["gender"] = "M"
    entry(bundle, "Patient")["birthDate"] = "1980"
    bundle["entry"].append({"resource": {"resourceType": "Claim"}})
    issues = {(i.expression, i.code) for i in refusal(bundle)}
    assert issues == {("Bundle.entry[4].resource.dispenseRequest.quantity.value", "value"),
                      ("Bundle.entry[4].resource.intent", "value"),
                      ("Bundle.entry[0].resource.gender", "code-invalid"),
                      ("Bundle.entry[0].resource.birthDate", "value"),
                      ("Bundle.entry[6].resource", "not-supported")}


@pytest.mark.parametrize("body, expression", [
    ({"resourceType": "Patient"}, "Bundle"),
    ([], "Bundle"),
    ({"resourceType": "Bundle", "type": "collection", "entry": "x"}, "Bundle.entry"),
    ({"resourceType": "Bundle", "type": "searchset", "entry": []}, "Bundle.type"),
    ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Bundle"}}] * 121},
     "Bundle.entry"),
])
def test_what_is_not_a_prescription_bundle(body, expression):
    assert expression in {i.expression for i in refusal(body)}


def test_missing_people_and_lines_are_named():
    bundle = example()
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] in ("Patient", "Condition")]
    messages = [i.message for i in refusal(bundle)]
    assert any("exactly one Practitioner" in m for m in messages)
    assert any("exactly one Organization" in m for m in messages)
    assert any("one MedicationRequest per drug line" in m for m in messages)


def test_a_drug_named_by_reference_or_without_the_formulary_system_is_refused():
    bundle = example()
    order = entry(bundle, "MedicationRequest", 0)
    order.pop("medicationCodeableConcept")
    order["medicationReference"] = {"reference": "Medication/1"}
    other = entry(bundle, "MedicationRequest", 1)
    other["medicationCodeableConcept"]["coding"][0]["system"] = "http://www.whocc.no/atc"
    expressions = {i.expression for i in refusal(bundle)}
    assert "Bundle.entry[4].resource.medicationReference" in expressions
    assert "Bundle.entry[5].resource.medicationCodeableConcept" in expressions


def test_the_first_of_several_identifiers_wins_by_kind_not_by_order():
    bundle = example()
    patient = entry(bundle, "Patient")
    patient["identifier"].insert(0, {"system": S.PASSPORT, "value": "B1234567"})
    sub = read_bundle(copy.deepcopy(bundle), TODAY)
    assert sub.request.draft.patient.identifier.WhichOneof("kind") == "citizen_id"


@pytest.mark.parametrize("where, value", [
    ("quantity", Decimal("1e999999999")), ("dose", Decimal("1e999999999")), ("frequency", 2**40),
    ("age", 2**40), ("money", Decimal("-1e999999999"))])
def test_absurd_numbers_are_refused_at_their_element_not_computed(where, value):
    """A billion-digit exponent must not become a billion digits; an int32 field must not
    overflow into an error the caller cannot read."""
    bundle = example()
    order = entry(bundle, "MedicationRequest")
    if where == "quantity":
        order["dispenseRequest"]["quantity"]["value"] = value
    elif where == "dose":
        order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = value
    elif where == "frequency":
        order["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = value
    elif where == "age":
        entry(bundle, "Patient")["extension"] = [{"url": S.EXT_AGE_IN_MONTHS, "valueInteger": value}]
    else:
        bundle["entry"].append({"resource": {"resourceType": "Encounter", "status": "finished",
                                             "identifier": [{"system": S.VISIT, "value": "v"}],
                                             "extension": [{"url": S.EXT_OTHER_COSTS,
                                                            "valueMoney": {"value": value, "currency": "VND"}}]}})
    issues = refusal(bundle)
    assert [i.code for i in issues] == ["value"] and "out of range" in issues[0].message
