"""The agency's consumer: reimbursement decisions beside the facilities' claims, exported apart."""
import csv
import io
from datetime import datetime, timezone

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.insurance import agency

AT = datetime(2026, 11, 30, 3, tzinfo=timezone.utc)


def outcome(claim_id, payee, fund, reason="OK", invoice=""):
    message = events_pb2.ClaimAdjudicated(
        claim_id=claim_id, member_id="0123456789", card_code="DN4010123456789", payee=payee,
        outcome=events_pb2.CLAIM_OUTCOME_APPROVED, fund_total_vnd=fund, invoice_number=invoice,
        pharmacy_code="PH0002" if payee == events_pb2.PAYEE_PATIENT else "PH0001",
        dispensed_on=common_pb2.Date(year=2026, month=11, day=30),
        lines=[events_pb2.AdjudicatedLine(line_number=1, drug_code="A10BA02-500T", quantity=60, unit_price_vnd=1_500,
                                          payment_ratio=100, fund_vnd=fund, outcome=events_pb2.LINE_OUTCOME_APPROVED,
                                          reason_code=reason)])
    message.adjudicated_at.FromDatetime(AT)
    return message


def test_a_reimbursement_reads_as_one_and_is_exported_apart():
    claim = outcome("c-1", events_pb2.PAYEE_FACILITY, 57_600)
    refund = outcome("r-1", events_pb2.PAYEE_PATIENT, 57_600, "PRICE_ABOVE_REFERENCE", "HD-0001")
    assert agency.describe(claim).startswith("claim c-1 APPROVED")
    shown = agency.describe(refund)
    assert shown.startswith("reimbursement to the patient r-1 APPROVED") and "invoice HD-0001" in shown
    assert "reimbursed 57600" in shown
    claims, refunds = io.StringIO(), io.StringIO()
    assert agency.export([c for c in (claim, refund) if not agency.reimbursement(c)], claims) == 1
    assert agency.export_reimbursements([c for c in (claim, refund) if agency.reimbursement(c)], refunds) == 1
    assert [r["MA_LK"] for r in csv.DictReader(io.StringIO(claims.getvalue()))] == ["c-1"]
    [row] = list(csv.DictReader(io.StringIO(refunds.getvalue())))
    assert (row["MA_YC"], row["T_HOANTRA"], row["SO_HOADON"], row["LY_DO"]) == ("r-1", "57600", "HD-0001",
                                                                              "PRICE_ABOVE_REFERENCE")


def test_the_decision_130_xml_parses_back_to_the_adjudications_totals():
    from datetime import date as day

    from services.insurance import xml130
    from services.insurance.domain.model import CardPeriod, Member
    first = outcome("c-1", events_pb2.PAYEE_FACILITY, 14_400)
    first.visit_key, first.prescription_code, first.benefit_percent = "01001:K-77", "01001abcdefg-c", 80
    first.lines[0].copay_vnd, first.lines[0].insured_vnd, first.lines[0].patient_vnd = 3_600, 18_000, 75_600
    second = outcome("c-2", events_pb2.PAYEE_FACILITY, 181_440)
    second.visit_key, second.prescription_code, second.benefit_percent = "01001:K-77", "01001abcdefg-c", 80
    other = outcome("c-3", events_pb2.PAYEE_FACILITY, 21_000)
    other.prescription_code = "79001zzzzzzz-c"       # no encounter stated: its own visit
    reversed_ = outcome("c-4", events_pb2.PAYEE_FACILITY, 5_000)
    reversed_.outcome = events_pb2.CLAIM_OUTCOME_REVERSED
    refund = outcome("r-1", events_pb2.PAYEE_PATIENT, 57_600)
    member = Member("0123456789", "001203004567", "Nguyễn Văn An", day(1980, 5, 17), "female",
                    (CardPeriod("DN4010123456789", day(2026, 1, 1), day(2026, 12, 31), "01001"),))
    claims = [first, second, other, reversed_, refund]
    document = xml130.envelope(claims, {"0123456789": member}, AT)
    assert document.startswith(b'<?xml version="1.0" encoding="utf-8"?><GIAMDINHHS>')
    visits = xml130.read(document)
    assert [v["XML1"]["MA_LK"] for v in visits] == ["K-77", "79001zzzzzzz-c"]
    k77 = visits[0]
    assert (k77["XML1"]["MA_CSKCB"], k77["XML1"]["GIOI_TINH"], k77["XML1"]["NGAY_SINH"]) == ("01001", "2",
                                                                                             "198005170000")
    assert k77["XML1"]["HO_TEN"] == "Nguyễn Văn An" and k77["XML1"]["GT_THE_DEN"] == "20261231"
    assert int(k77["XML1"]["T_BHTT"]) == 14_400 + 181_440 == sum(int(r["T_BHTT"]) for r in k77["XML2"])
    assert [r["MA_CHUNG_TU"] for r in k77["XML2"]] == ["c-1", "c-2"] and k77["XML2"][0]["NGAY_YL"] == "202611301000"
    total = sum(int(v["XML1"]["T_BHTT"]) for v in visits)
    assert total == sum(c.fund_total_vnd for c in (first, second, other))   # no reversed claim, no refund


def test_the_agency_sees_outcomes_and_alerts_and_nothing_else():
    from services.common.events import new_envelope
    submission = new_envelope(events_pb2.ClaimSubmitted(claim_id="c-1"), key="k", producer="t", correlation_id="c",
                              occurred_at=AT)
    assert agency.describe_event(submission) is None
    request = new_envelope(events_pb2.ReimbursementRequested(reimbursement_id="r-1"), key="k", producer="t",
                           correlation_id="c", occurred_at=AT)
    assert agency.describe_event(request) is None     # not on its topics: decided within seconds, shown then
    decided = new_envelope(outcome("r-1", events_pb2.PAYEE_PATIENT, 57_600), key="k", producer="t",
                           correlation_id="c", occurred_at=AT)
    assert agency.describe_event(decided).startswith("reimbursement to the patient r-1")
    alert = new_envelope(events_pb2.SafetyAlert(alert_id="a-1", kind=events_pb2.ALERT_KIND_DOCTOR_SHOPPING,
                                                patient_key="p-7f3a", prescription_codes=["x", "y", "z"]),
                         key="p-7f3a", producer="t", correlation_id="c", occurred_at=AT)
    assert agency.describe_event(alert).startswith("alert a-1 doctor shopping: patient p-7f3a")
