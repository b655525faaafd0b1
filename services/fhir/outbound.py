"""The platform's answers as FHIR R4 resources (plain JSON dicts): a prescription's lines as
MedicationRequests, its sales as MedicationDispenses, an adjudicated claim as a
ClaimResponse, an eligibility check as a CoverageEligibilityResponse; refusals and warnings
as OperationOutcomes. Money is a whole number of dong (currency VND). The mapping, element by
element, is in docs/fhir.md."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.insurance.v1 import insurance_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2
from eprescription.prescribing.v1 import prescribing_pb2

from services.common import dates
from services.fhir import systems as S

TYPE_CODES = {common_pb2.PRESCRIPTION_TYPE_ORDINARY: ("c", "Ordinary"),
              common_pb2.PRESCRIPTION_TYPE_NARCOTIC: ("n", "Narcotic"),
              common_pb2.PRESCRIPTION_TYPE_PSYCHOTROPIC: ("h", "Psychotropic or precursor"),
              common_pb2.PRESCRIPTION_TYPE_TRADITIONAL: ("y", "Traditional medicine")}
# MedicationRequest.status has no "replaced" or "expired": both stop the order (statusReason says which).
REQUEST_STATUS = {common_pb2.PRESCRIPTION_STATUS_ACTIVE: "active",
                  common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED: "active",
                  common_pb2.PRESCRIPTION_STATUS_COMPLETED: "completed",
                  common_pb2.PRESCRIPTION_STATUS_CANCELLED: "cancelled",
                  common_pb2.PRESCRIPTION_STATUS_REPLACED: "stopped",
                  common_pb2.PRESCRIPTION_STATUS_EXPIRED: "stopped"}
STATUS_REASON = {common_pb2.PRESCRIPTION_STATUS_REPLACED: "replaced",
                 common_pb2.PRESCRIPTION_STATUS_EXPIRED: "expired: not dispensed within its window"}
CLAIM_OUTCOME = {events_pb2.CLAIM_OUTCOME_APPROVED: "complete", events_pb2.CLAIM_OUTCOME_PARTIAL: "partial",
                 events_pb2.CLAIM_OUTCOME_REJECTED: "error", events_pb2.CLAIM_OUTCOME_REVERSED: "complete"}
PAYEE = {events_pb2.PAYEE_FACILITY: "provider", events_pb2.PAYEE_PATIENT: "subscriber"}
AGENCY = {"identifier": {"system": S.FACILITY, "value": "BHXH"}, "display": "Bảo hiểm xã hội Việt Nam"}


def _instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _timestamp(ts) -> str:
    return _instant(ts.ToDatetime(tzinfo=timezone.utc))


def _money(vnd: int) -> dict:
    return {"value": int(vnd), "currency": "VND"}


def _days(n: int) -> dict:
    return {"value": n, "unit": "days", "system": S.UCUM, "code": "d"}


def _decimal(text: str):
    """A dose as JSON: an int when whole, else a Decimal (serialised exactly, never a float)."""
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else value


def _identifier(system: str, value: str) -> dict:
    return {"system": system, "value": value}


def pruned(value):
    """FHIR has no empty values: strings, objects and arrays left empty are dropped."""
    if isinstance(value, dict):
        kept = {k: pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", {}, [], None)}
    if isinstance(value, list):
        kept = [pruned(v) for v in value]
        return [v for v in kept if v not in ("", {}, [], None)]
    return value


def _someone(reference: dict, what: str) -> dict:
    """A required reference whose identifier is not known says so."""
    return pruned(reference) or {"display": f"{what} not recorded"}


def patient_reference(patient: common_pb2.Patient, hidden: bool) -> dict:
    if hidden or not patient.HasField("identifier"):
        return {"extension": [{"url": S.DATA_ABSENT, "valueCode": "masked"}],
                "display": "identity withheld (protected health information)"}
    kind = patient.identifier.WhichOneof("kind")
    system = {"citizen_id": S.NATIONAL_ID, "health_id": S.HEALTH_ID, "passport": S.PASSPORT}[kind]
    return {"identifier": _identifier(system, getattr(patient.identifier, kind)), "display": patient.name}


def request_id(code: str, line_number: int) -> str:
    return f"{code}-{line_number}"


def medication_requests(rx: common_pb2.Prescription, status: int, progress: dict[int, tuple[int, int]] | None = None,
                        hidden: bool = False, successor: str = "", signature_verified: bool | None = None) -> list[dict]:
    """One MedicationRequest per line, grouped by the national code. `progress`: line ->
    (dispensed, remaining), when known."""
    out = []
    for line in sorted(rx.lines, key=lambda l: l.line_number):
        out.append(_medication_request(rx, line, status, progress, hidden, successor, signature_verified))
    return out


def _medication_request(rx, line, status, progress, hidden, successor, signature_verified) -> dict:
    code, display = TYPE_CODES.get(rx.type, ("c", "Ordinary"))
    resource: dict = {
        "resourceType": "MedicationRequest", "id": request_id(rx.code, line.line_number),
        "identifier": [_identifier(S.PRESCRIPTION_CODE, f"{rx.code}/{line.line_number}")],
        "status": REQUEST_STATUS.get(status, "unknown"), "intent": "order",
        "category": [{"coding": [{"system": S.PRESCRIPTION_TYPE, "code": code, "display": display}]}],
        "medicationCodeableConcept": {
            "coding": [{"system": S.MEDICATION, "code": line.drug_code, **({"display": line.drug_name} if line.drug_name else {})}],
            "text": " ".join(x for x in (line.drug_name, line.strength) if x) or line.drug_code},
        "subject": patient_reference(rx.patient, hidden),
        "requester": _someone({"identifier": _identifier(S.PRACTISING_CERTIFICATE, rx.prescriber.certificate_number),
                               "display": rx.prescriber.name}, "prescriber"),
        "groupIdentifier": _identifier(S.PRESCRIPTION_CODE, rx.code),
        "dosageInstruction": [_dosage(line)],
        "dispenseRequest": {
            "quantity": {"value": line.quantity, **({"unit": line.unit} if line.unit else {})},
            "expectedSupplyDuration": _days(line.days)},
    }
    if rx.HasField("issued_at"):
        resource["authoredOn"] = _timestamp(rx.issued_at)
    if status in STATUS_REASON:
        reason = STATUS_REASON[status] + (f" by {successor}" if successor else "")
        resource["statusReason"] = {"text": reason}
    if rx.diagnoses:
        resource["reasonCode"] = [{"coding": [{"system": S.ICD10, "code": d.icd10}], "text": d.text}
                                  for d in rx.diagnoses]
    if rx.encounter.id:
        resource["encounter"] = {"identifier": _identifier(S.VISIT, rx.encounter.id)}
    if rx.replaces_code:
        resource["priorPrescription"] = {"identifier": _identifier(S.PRESCRIPTION_CODE, rx.replaces_code)}
    batch = next((b for b in rx.batches if b.number == line.batch_number), None) if line.batch_number else None
    window_end = batch.end if batch else rx.valid_until
    period = {}
    if batch is not None:
        period["start"] = dates.from_proto(batch.start).isoformat()
    if window_end.year:
        period["end"] = dates.from_proto(window_end).isoformat()
    if period:
        resource["dispenseRequest"]["validityPeriod"] = period
    if rx.advice and line.line_number == min(l.line_number for l in rx.lines):
        resource["note"] = [{"text": rx.advice}]
    extensions = []
    if line.batch_number:
        extensions.append({"url": S.EXT_BATCH, "valueInteger": line.batch_number})
    if line.not_available_at_facility:
        extensions.append({"url": S.EXT_NOT_AVAILABLE, "valueBoolean": True})
        if line.not_available_reason:
            extensions.append({"url": S.EXT_NOT_AVAILABLE_REASON, "valueString": line.not_available_reason})
    if progress and line.line_number in progress:
        dispensed, remaining = progress[line.line_number]
        extensions += [{"url": S.EXT_DISPENSED, "valueInteger": dispensed},
                       {"url": S.EXT_REMAINING, "valueInteger": remaining}]
    if signature_verified is not None:
        extensions.append({"url": S.EXT_SIGNATURE_VERIFIED, "valueBoolean": signature_verified})
    if extensions:
        resource["extension"] = extensions
    return pruned(resource)


def _dosage(line: common_pb2.PrescriptionLine) -> dict:
    dosage: dict = {"sequence": 1,
                    "timing": {"repeat": {"boundsDuration": _days(line.days), "frequency": line.administrations_per_day,
                                          "period": 1, "periodUnit": "d"}}}
    if line.directions:
        dosage["text"] = line.directions
    if line.route:
        dosage["route"] = {"text": line.route}
    if line.dose_per_administration:
        dose = {"value": _decimal(line.dose_per_administration)}
        if line.unit:
            dose["unit"] = line.unit
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    return dosage


def medication_dispenses(listing: pharmacy_pb2.ListDispensesResponse,
                         units: dict[int, str] | None = None) -> list[dict]:
    """One MedicationDispense per line of each sale; a reversed sale's are cancelled."""
    out = []
    for sale in listing.dispenses:
        for line in sale.lines:
            resource = {
                "resourceType": "MedicationDispense", "id": f"{sale.dispense_id}-{line.line_number}",
                "identifier": [_identifier(S.DISPENSE, f"{sale.dispense_id}/{line.line_number}")],
                "status": "cancelled" if sale.HasField("reversed_at") else "completed",
                "medicationCodeableConcept": {"coding": [{"system": S.MEDICATION, "code": line.drug_code}]},
                "performer": [{"actor": {"identifier": _identifier(S.PHARMACY, sale.pharmacy_code)}}],
                "authorizingPrescription": [{"reference": f"MedicationRequest/{request_id(listing.code, line.line_number)}"}],
                "quantity": {"value": line.quantity, **({"unit": units[line.line_number]}
                                                        if units and units.get(line.line_number) else {})},
                "whenHandedOver": _timestamp(sale.dispensed_at),
                "substitution": {"wasSubstituted": line.substitution},
                "extension": [{"url": S.EXT_UNIT_PRICE, "valueMoney": _money(line.unit_price_vnd)}],
            }
            if sale.HasField("reversed_at"):
                resource["statusReasonCodeableConcept"] = {"text": f"reversed at {_timestamp(sale.reversed_at)}"}
            out.append(pruned(resource))
    return out


def _adjudication(category: str, vnd: int | None = None, reason: str = "", value=None,
                  system: str = S.ADJUDICATION) -> dict:
    item: dict = {"category": {"coding": [{"system": system, "code": category}]}}
    if vnd is not None:
        item["amount"] = _money(vnd)
    if value is not None:
        item["value"] = value
    if reason:
        item["reason"] = {"coding": [{"system": S.RULE, "code": reason}]}
    return item


def claim_response(claim: insurance_pb2.GetClaimResponse) -> dict:
    a = claim.adjudication
    resource: dict = {
        "resourceType": "ClaimResponse", "id": claim.claim_id,
        "identifier": [_identifier(S.CLAIM, claim.claim_id)],
        "status": "cancelled" if claim.outcome == events_pb2.CLAIM_OUTCOME_REVERSED else "active",
        "type": {"coding": [{"system": S.CLAIM_TYPE, "code": "pharmacy"}]},
        "use": "claim",
        "patient": _someone({"identifier": _identifier(S.INSURANCE_NUMBER, a.card_code)}, "card"),
        "created": _timestamp(a.adjudicated_at) if a.HasField("adjudicated_at") else _instant(datetime.now(timezone.utc)),
        "insurer": AGENCY,
        "request": {"identifier": _identifier(S.CLAIM, claim.claim_id)},
        "outcome": CLAIM_OUTCOME.get(claim.outcome, "queued"),
        "item": [{"itemSequence": l.line_number,
                  "adjudication": [
                      _adjudication("submitted", l.quantity * l.unit_price_vnd),
                      _adjudication("eligible", l.insured_vnd, l.reason_code),
                      _adjudication("eligpercent", value=l.payment_ratio),
                      _adjudication("benefit", l.fund_vnd),
                      _adjudication("copay", l.copay_vnd),
                      _adjudication("patient", l.patient_vnd, system=S.PATIENT_SHARE)]}
                 for l in a.lines],
        "total": [_adjudication("submitted", sum(l.quantity * l.unit_price_vnd for l in a.lines)),
                  _adjudication("eligible", sum(l.insured_vnd for l in a.lines)),
                  _adjudication("benefit", a.fund_total_vnd),
                  _adjudication("patient", a.patient_total_vnd, system=S.PATIENT_SHARE)],
    }
    if a.pharmacy_code:
        resource["requestor"] = {"identifier": _identifier(S.PHARMACY, a.pharmacy_code)}
    if a.reason_code or claim.outcome == events_pb2.CLAIM_OUTCOME_REVERSED:
        resource["disposition"] = a.reason_code or "reversed"
    if a.payee in PAYEE:
        resource["payeeType"] = {"coding": [{"system": S.PAYEE_TYPE, "code": PAYEE[a.payee]}]}
    if a.prescription_code:
        resource["preAuthRef"] = a.prescription_code   # the prescription the sale was made against
    if a.fund_total_vnd:
        resource["payment"] = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype",
                                                    "code": "complete"}]},
                               "amount": _money(a.fund_total_vnd)}
    return pruned(resource)


def eligibility_response(reply: insurance_pb2.CheckEligibilityResponse, card: str, facility: str, day: date,
                         check_id: str, now: datetime) -> dict:
    insurance: dict = {"coverage": {"identifier": _identifier(S.INSURANCE_NUMBER, reply.card_code or card)},
                       "inforce": reply.eligible}
    if reply.valid_from.year and reply.valid_to.year:
        insurance["benefitPeriod"] = {"start": dates.from_proto(reply.valid_from).isoformat(),
                                      "end": dates.from_proto(reply.valid_to).isoformat()}
    if reply.eligible:
        copay = 0 if reply.copay_exempt else 100 - reply.benefit_percent
        insurance["item"] = [{
            "category": {"coding": [{"system": S.BENEFIT_CATEGORY, "code": "30",
                                     "display": "Health Benefit Plan Coverage"}]},
            "benefit": [{"type": {"coding": [{"system": S.BENEFIT_TYPE, "code": "copay-percent"}]},
                         "allowedUnsignedInt": copay}]}]
    resource: dict = {
        "resourceType": "CoverageEligibilityResponse", "id": check_id,
        "identifier": [_identifier(S.ELIGIBILITY_CHECK, check_id)],
        "status": "active", "purpose": ["validation"],
        "patient": _someone({"identifier": _identifier(S.INSURANCE_NUMBER, reply.card_code or card)}, "card"),
        "servicedDate": day.isoformat(), "created": _instant(now),
        "requestor": {"identifier": _identifier(S.FACILITY, facility)},
        "request": {"identifier": _identifier(S.ELIGIBILITY_CHECK, check_id)},
        "outcome": "complete", "insurer": AGENCY, "insurance": [insurance],
    }
    if reply.reason:
        resource["disposition"] = reply.reason
    if not reply.eligible:
        resource["error"] = [{"code": {"coding": [{"system": S.RULE, "code": reply.reason or "NOT_ELIGIBLE"}]}}]
    return pruned(resource)


def outcome(issues: list[dict]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": issues or [
        {"severity": "information", "code": "informational", "diagnostics": "ok"}]}


def issue(severity: str, code: str, message: str, expression: str = "", rule: str = "") -> dict:
    out: dict = {"severity": severity, "code": code, "diagnostics": message}
    if rule:
        out["details"] = {"coding": [{"system": S.RULE, "code": rule}], "text": message}
    if expression:
        out["expression"] = [expression]
    return out


def warnings(reply: prescribing_pb2.IssuePrescriptionResponse, drugs: dict[str, str]) -> list[dict]:
    severities = {prescribing_pb2.SEVERITY_INFO: "information"}
    return [issue(severities.get(w.severity, "warning"), "business-rule", w.message,
                  next((drugs[c] for c in w.drug_codes if c in drugs), ""), w.rule.upper())
            for w in reply.warnings]


def searchset(base: str, resources: list[dict], self_link: str) -> dict:
    return pruned({"resourceType": "Bundle", "type": "searchset", "total": len(resources),
                   "link": [{"relation": "self", "url": self_link}],
                   "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                              "search": {"mode": "match"}} for r in resources]})


def collection(base: str, resources: list[dict], now: datetime) -> dict:
    return pruned({"resourceType": "Bundle", "type": "collection", "timestamp": _instant(now),
                   "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]})
