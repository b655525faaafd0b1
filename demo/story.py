"""`make demo`: the platform's story told with real calls against the running system.

A hospital issues prescriptions (one draws a safety warning); who the fund pays, in its three
cases: the hospital's own dispensary sells with a BHYT card (a claim within the visit), a retail
pharmacy sells with the card (cash: RETAIL_NOT_COVERED), and a retail pharmacy sells a line the
hospital marked not available (BHXH reimburses the patient, capped at the facility's price); a
sale past what remains is refused, the claims and the reimbursement are decided and the agency's
consumer shows them, a prescription is replaced and its old code refused, and a doctor-shopping
alert fires. Every step prints what was sent and what came back."""
from __future__ import annotations

import csv
import json
import secrets
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import grpc
from eprescription.common.v1 import common_pb2
from eprescription.insurance.v1 import insurance_pb2, insurance_pb2_grpc
from eprescription.pharmacy.v1 import pharmacy_pb2, pharmacy_pb2_grpc
from eprescription.prescribing.v1 import prescribing_pb2, prescribing_pb2_grpc
from google.protobuf.json_format import MessageToDict

from services.common.auth import load_tokens
from services.common.config import CommonSettings
from services.common.events import EventDecodeError, decode, payload_of
from services.common.grpc_errors import details_of
from services.kernel.calendar import VIETNAM, local_day
from services.common.topic_reader import TopicFollower
from services.common.topics import ALERTS, CLAIMS_ADJUDICATED
from services.insurance import agency
from services.insurance.import_members import run as import_members
from services.insurance.config import Settings as InsuranceSettings

PRESCRIBER_1 = dict(certificate_number="001234/HNO-CCHN", linkage_code="BS01001001", facility_code="01001")
PRESCRIBER_2 = dict(certificate_number="001235/HNO-CCHN", linkage_code="BS01001002", facility_code="01001")
PRESCRIBER_B = dict(certificate_number="045678/HCM-CCHN", linkage_code="BS79001001", facility_code="79001")


def summary(request: dict) -> dict:
    """A draft as a person reads it: type, patient, diagnoses, prescriber, lines."""
    d = request["draft"]
    return {"type": d["type"].removeprefix("PRESCRIPTION_TYPE_"), "patient": d["patient"]["identifier"],
            "diagnoses": [x["icd10"] for x in d["diagnoses"]], "prescriber": d["prescriber"]["certificate_number"],
            "lines": [f"{l['drug_code']} x{l['quantity']} ({l['dose_per_administration']} x {l['administrations_per_day']}"
                      f"/day x {l['days']} days)" for l in d["lines"]]}


def digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


class Story:
    def __init__(self, settings: CommonSettings, out=print):
        self.settings = settings
        self.say = out
        tokens = load_tokens(settings.credentials_file.parent / "tokens.json")
        self.md = {label: (("authorization", f"Bearer {token}"), ("x-correlation-id", f"demo-{uuid.uuid4().hex[:8]}"))
                   for label, token in tokens.items()}
        ports = settings.ports
        pki = settings.pki   # TLS, trusting the run's CA (plaintext only under EPRX_PLAINTEXT_DEV=1)
        self.prescribing = prescribing_pb2_grpc.PrescribingServiceStub(pki.channel(f"127.0.0.1:{ports.prescribing}"))
        self.pharmacy = pharmacy_pb2_grpc.PharmacyServiceStub(pki.channel(f"127.0.0.1:{ports.pharmacy}"))
        self.insurance = insurance_pb2_grpc.InsuranceServiceStub(pki.channel(f"127.0.0.1:{ports.insurance}"))
        self.today = local_day(datetime.now(VIETNAM))
        self.results: dict = {}

    # Printing

    def step(self, title: str) -> None:
        self.say(f"\n=== {title}")

    def show(self, label: str, message, keep: Callable[[dict], dict] | None = None) -> None:
        body = MessageToDict(message, preserving_proto_field_name=True)
        self.say(f"  {label}: {json.dumps(keep(body) if keep else body, ensure_ascii=False)}")

    def call(self, label: str, method, request, who: str, keep=None, expect_error: bool = False, sent=None):
        self.show(f"-> {label} as {who}", request, keep=sent)
        try:
            reply = method(request, metadata=self.md[who], timeout=10)
        except grpc.RpcError as error:
            reasons = [d.reason for d in details_of(error) if hasattr(d, "reason") and d.reason]
            self.say(f"  <- {error.code().name}: {error.details()} {reasons}")
            if not expect_error:
                raise
            return error
        self.show("<-", reply, keep)
        return reply

    # Helpers

    def eventually(self, what: str, check, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def draft(self, patient_id, card, lines, *, rx_type=common_pb2.PRESCRIPTION_TYPE_ORDINARY,
              diagnoses=(("J02.9", "Viêm họng cấp"),), prescriber=PRESCRIBER_1, **kw):
        return prescribing_pb2.PrescriptionDraft(
            type=rx_type,
            patient=common_pb2.Patient(identifier=common_pb2.PatientIdentifier(citizen_id=patient_id),
                                       name="Bệnh nhân Demo", sex=common_pb2.SEX_FEMALE, address="1 Tràng Tiền, Hà Nội",
                                       date_of_birth=common_pb2.Date(year=1968, month=4, day=12), bhyt_card=card),
            diagnoses=[common_pb2.Diagnosis(icd10=c, text=t) for c, t in diagnoses],
            prescriber=common_pb2.Prescriber(**prescriber),
            lines=[common_pb2.PrescriptionLine(drug_code=d, quantity=q, dose_per_administration=dose,
                                               administrations_per_day=per_day, days=days, directions="theo chỉ dẫn")
                   for d, q, dose, per_day, days in lines], **kw)

    def issue(self, who: str, draft, override: str = ""):
        reply = self.call("IssuePrescription", self.prescribing.IssuePrescription,
                          prescribing_pb2.IssuePrescriptionRequest(client_request_id=str(uuid.uuid4()), draft=draft,
                                                                   override_reason=override), who, sent=summary,
                          keep=lambda b: {"code": b["prescription"]["code"],
                                          "valid_until": b["prescription"].get("valid_until"),
                                          "warnings": [w["message"] for w in b.get("warnings", [])]})
        return reply

    def listed(self, patient_id: str, code: str) -> bool:
        meds = self.prescribing.ListPatientMedications(
            prescribing_pb2.ListPatientMedicationsRequest(patient=common_pb2.PatientIdentifier(citizen_id=patient_id)),
            metadata=self.md["prescriber-hospital-a"])
        return any(m.prescription_code == code for m in meds.medications)

    def at_pharmacy(self, code: str) -> bool:
        try:
            self.pharmacy.LookupPrescription(pharmacy_pb2.LookupPrescriptionRequest(code=code),
                                             metadata=self.md["pharmacy-a"])
            return True
        except grpc.RpcError:
            return False

    def sell(self, who, code, lines, card=None, expect_error=False, invoice=""):
        request = pharmacy_pb2.DispensePrescriptionRequest(
            idempotency_key=str(uuid.uuid4()), code=code, invoice_number=invoice,
            lines=[pharmacy_pb2.DispenseLine(line_number=n, drug_code=d, quantity=q, unit_price_vnd=p)
                   for n, d, q, p in lines])
        if card:
            request.bhyt_card = card
        else:
            request.self_pay = True
        return self.call("DispensePrescription", self.pharmacy.DispensePrescription, request, who,
                         expect_error=expect_error)

    # The story

    def register_member(self) -> tuple[str, str]:
        self.step("0. The agency registers a member (its CSV export, imported as in production)")
        ssn, cccd = digits(10), "0" + digits(11)
        card = f"DN4{'01'}{ssn}"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "members.csv"
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["card_code", "social_security_number", "citizen_id", "full_name", "date_of_birth",
                                 "sex", "valid_from", "valid_to", "registered_facility", "copay_exempt_from",
                                 "five_years_from"])
                writer.writerow([card, ssn, cccd, "Bệnh nhân Demo", "1968-04-12", "female",
                                 (self.today - timedelta(days=300)).isoformat(),
                                 (self.today + timedelta(days=65)).isoformat(), "01001", "", ""])
            import asyncio
            accepted, *_ = asyncio.run(import_members(path, InsuranceSettings.from_env()))
        self.say(f"  imported {accepted} member: card {card} (benefit digit 4: 80%)")
        self.call("CheckEligibility", self.insurance.CheckEligibility,
                  insurance_pb2.CheckEligibilityRequest(card_identifier=cccd, facility_code="01001"), "pharmacy-a",
                  keep=lambda b: {k: b.get(k) for k in ("eligible", "reason", "benefit_percent", "card_code")})
        return cccd, card

    def run(self) -> dict:
        patient, card = self.register_member()

        self.step("1. Hospital A issues a 90-day chronic prescription (atrial fibrillation: warfarin)")
        chronic = self.issue("prescriber-hospital-a", self.draft(
            patient, card, [("B01AA03-5T", 90, "1", 1, 90)], diagnoses=(("I48", "Rung nhĩ"),))).prescription
        self.eventually("the medication list", lambda: self.listed(patient, chronic.code))

        self.step("2. Hospital A issues an ordinary prescription: the safety check warns about warfarin + ibuprofen")
        ordinary = self.issue("prescriber-hospital-a", self.draft(
            patient, card, [("J01CR02-1GT", 14, "1", 2, 7), ("M01AE01-400T", 15, "1", 3, 5),
                            ("C10AA07-10T", 30, "1", 1, 30)], diagnoses=(("J02.9", "Viêm họng cấp"),
                                                                         ("E78.0", "Tăng cholesterol máu")))).prescription

        self.step("3. Hospital A issues a narcotic prescription (acute pain, 5 days)")
        narcotic = self.issue("prescriber-hospital-a", self.draft(
            patient, card, [("N02AA01-10T", 20, "1", 4, 5)], rx_type=common_pb2.PRESCRIPTION_TYPE_NARCOTIC,
            diagnoses=(("S82.2", "Gãy thân xương chày"),), acute=True)).prescription

        self.step("4. Pharmacy A, Hospital A's own dispensary, looks the ordinary prescription up and sells part of\n"
                  "   it with the BHYT card: the fund pays the facility, within the visit's claim")
        self.eventually("the prescription at the pharmacy", lambda: self.at_pharmacy(ordinary.code))
        self.call("LookupPrescription", self.pharmacy.LookupPrescription,
                  pharmacy_pb2.LookupPrescriptionRequest(code=ordinary.code), "pharmacy-a",
                  keep=lambda b: {"status": b.get("status"), "lines": b.get("lines"),
                                  "signature_verified": b.get("signature_verified")})
        first = self.sell("pharmacy-a", ordinary.code, [(1, "J01CR02-1GT", 14, 16_200), (2, "M01AE01-400T", 10, 1_800),
                                                        (3, "C10AA07-10T", 30, 15_800)], card=card)
        self.say("  (718,800 dong of covered drugs: the fund pays 80%, the patient 20%)")

        self.step("5. The dispensary sells the rest, in the same visit")
        self.adjudications([first.claim_id])   # the counter's quote counts the visit's adjudicated sales
        second = self.sell("pharmacy-a", ordinary.code, [(2, "M01AE01-400T", 5, 1_800)], card=card)
        self.say("  (9,000 dong alone is under 15% of the base salary, but the threshold is judged on the whole\n"
                 "   visit, 727,800 dong: the fund pays 80% here too, as it would for one sale of both)")

        self.step("6. A third sale is refused: nothing remains, counted across every pharmacy")
        third = self.sell("pharmacy-b", ordinary.code, [(2, "M01AE01-400T", 1, 1_800)], expect_error=True)

        self.step("7. Pharmacy B, a retail pharmacy, sells 30 days of the warfarin with the card: the fund pays\n"
                  "   nothing there (RETAIL_NOT_COVERED); the sale is cash, with its e-invoice")
        self.eventually("the chronic prescription at the pharmacy", lambda: self.at_pharmacy(chronic.code))
        retail = self.sell("pharmacy-b", chronic.code, [(1, "B01AA03-5T", 30, 2_300)], card=card,
                           invoice="HD-B-000101")

        self.step("8. Hospital A cannot supply metformin (its tender failed): it marks the line not available;\n"
                  "   Pharmacy B sells it, and BHXH reimburses the patient, capped at the facility's price")
        unavailable = self.draft(patient, card, [("A10BA02-500T", 60, "1", 2, 30)],
                                 diagnoses=(("E11.9", "Đái tháo đường típ 2"),))
        unavailable.lines[0].not_available_at_facility = True
        unavailable.lines[0].not_available_reason = "gói thầu thất bại; không có thuốc cùng hoạt chất; không thể chuyển tuyến"
        metformin = self.issue("prescriber-hospital-a", unavailable).prescription
        self.eventually("the metformin prescription at the pharmacy", lambda: self.at_pharmacy(metformin.code))
        reimbursed = self.sell("pharmacy-b", metformin.code, [(1, "A10BA02-500T", 60, 1_500)], card=card,
                               invoice="HD-B-000102")
        self.say("  (paid 90,000 at the counter; reimbursable: 60 x 1,200 (the national price, the cap) x 80% = 57,600)")

        self.step("9. The claims and the reimbursement are decided; the agency's consumer shows them")
        claims = self.adjudications([first.claim_id, second.claim_id])
        decisions = self.adjudications([reimbursed.reimbursement_id])
        for claim in [*claims.values(), *decisions.values()]:
            self.say("  agency | " + agency.describe(claim))

        self.step("10. Hospital A replaces the narcotic prescription; the old code is refused at the pharmacy")
        self.eventually("the narcotic at the pharmacy", lambda: self.at_pharmacy(narcotic.code))
        replaced = self.call("ReplacePrescription", self.prescribing.ReplacePrescription,
                             prescribing_pb2.ReplacePrescriptionRequest(
                                 client_request_id=str(uuid.uuid4()), code=narcotic.code, reason="giảm liều",
                                 draft=self.draft(patient, card, [("N02AA01-10T", 15, "1", 3, 5)],
                                                  rx_type=common_pb2.PRESCRIPTION_TYPE_NARCOTIC,
                                                  diagnoses=(("S82.2", "Gãy thân xương chày"),), acute=True)),
                             "prescriber-hospital-a", sent=lambda b: {"code": b["code"], "reason": b["reason"],
                                                                      **summary(b)},
                             keep=lambda b: {"code": b["prescription"]["code"],
                                             "replaces_code": b["prescription"]["replaces_code"]}).prescription

        def marked_replaced():
            looked = self.pharmacy.LookupPrescription(pharmacy_pb2.LookupPrescriptionRequest(code=narcotic.code),
                                                      metadata=self.md["pharmacy-a"])
            return looked.status == common_pb2.PRESCRIPTION_STATUS_REPLACED
        self.eventually("the replacement to reach the pharmacy", marked_replaced)
        refused_old = self.sell("pharmacy-a", narcotic.code, [(1, "N02AA01-10T", 4, 4_500)], expect_error=True)
        self.eventually("the replacement at the pharmacy", lambda: self.at_pharmacy(replaced.code))

        self.step("11. Three prescribers give psychotropics to one patient within 30 days: a doctor-shopping alert")
        shopper = "0" + digits(11)
        for who, prescriber in (("prescriber-hospital-a", PRESCRIBER_1), ("prescriber-hospital-a", PRESCRIBER_2),
                                ("prescriber-hospital-b", PRESCRIBER_B)):
            self.issue(who, self.draft(shopper, "", [("N05BA01-5T", 10, "1", 1, 10)],
                                       rx_type=common_pb2.PRESCRIPTION_TYPE_PSYCHOTROPIC, acute=True,
                                       diagnoses=(("F41.0", "Rối loạn hoảng sợ"),), prescriber=prescriber))
        alert = self.alert_for(self.settings.pseudonyms().of("citizen_id", shopper))   # alerts name a pseudonym
        self.show("alert on rx.alerts.v1", alert, keep=lambda b: {k: b.get(k) for k in ("kind", "prescription_codes",
                                                                                        "prescriber_ids", "detail")})
        self.results = {"chronic": chronic.code, "ordinary": ordinary.code, "narcotic": narcotic.code,
                        "replacement": replaced.code, "claims": {k: v.outcome for k, v in claims.items()},
                        "retail_sale": (retail.claim_id, retail.reimbursement_id, retail.fund_total_vnd,
                                        retail.patient_total_vnd),
                        "reimbursement": {k: (v.outcome, v.payee, v.fund_total_vnd, [l.reason_code for l in v.lines])
                                          for k, v in decisions.items()},
                        "third_sale": third.code().name, "old_code": refused_old.code().name,
                        "alert": alert.alert_id, "sales": [first.dispense_id, second.dispense_id],
                        "patients": [patient, shopper], "cards": [card]}
        self.step("Done")
        return self.results

    def adjudications(self, claim_ids: list[str], timeout: float = 90.0) -> dict:
        wanted, found = set(claim_ids), {}
        deadline = time.monotonic() + timeout
        with TopicFollower(self.settings.kafka_access("agency"), CLAIMS_ADJUDICATED) as follower:
            while wanted - set(found) and time.monotonic() < deadline:
                for record in follower.poll():
                    try:
                        claim = payload_of(decode(record.value))
                    except EventDecodeError:
                        continue
                    if claim.claim_id in wanted:
                        found[claim.claim_id] = claim
        if wanted - set(found):
            raise RuntimeError(f"claims not adjudicated in {timeout}s: {sorted(wanted - set(found))}")
        return found

    def alert_for(self, patient_key: str, timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        with TopicFollower(self.settings.kafka_access("agency"), ALERTS) as follower:
            while time.monotonic() < deadline:
                for record in follower.poll():
                    alert = payload_of(decode(record.value))
                    if alert.patient_key == patient_key:
                        return alert
        raise RuntimeError("no doctor-shopping alert")


def main() -> int:
    settings = CommonSettings.from_env()
    try:
        Story(settings).run()
    except grpc.RpcError as error:
        print(f"\nthe demo stopped: {error.code().name}: {error.details()} (is the system up? `make run`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
