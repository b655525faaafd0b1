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
