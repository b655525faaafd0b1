"""InsuranceService over a real channel: every RPC and error path."""
from datetime import date

import grpc
from eprescription.common.v1 import common_pb2
from eprescription.insurance.v1 import insurance_pb2 as pb

from services.insurance.import_members import run as import_members
from services.insurance.config import Settings
from tests.support.insurance_fixtures import new_member
from tests.support.prescribing_fixtures import auth
from tests.support.rpc import fields_of, reason_of, refused

NOV30 = common_pb2.Date(year=2026, month=11, day=30)


async def test_the_three_identifiers_name_one_member_and_validity_is_judged_on_the_date(insurance, store):
    stub, tokens, _, _ = insurance
    m = new_member(3)
    assert (await store.upsert_member(m))[0] == "changed"
    for identifier in (m.cards[0].card_code, m.member_id, m.citizen_id):
        reply = await stub.CheckEligibility(pb.CheckEligibilityRequest(card_identifier=identifier, date=NOV30),
                                            metadata=auth(tokens, "pharmacy-a"))
        assert (reply.eligible, reply.reason, reply.member_id, reply.benefit_percent) == (True, "ELIGIBLE", m.member_id, 95)
        assert reply.card_code == m.cards[0].card_code and reply.registered_facility == "01001"
    late = await stub.CheckEligibility(pb.CheckEligibilityRequest(
        card_identifier=m.member_id, date=common_pb2.Date(year=2027, month=1, day=1)), metadata=auth(tokens, "insurer"))
    assert (late.eligible, late.reason) == (False, "CARD_EXPIRED")
    early = await stub.CheckEligibility(pb.CheckEligibilityRequest(
        card_identifier=m.member_id, date=common_pb2.Date(year=2025, month=12, day=31)), metadata=auth(tokens, "insurer"))
    assert (early.eligible, early.reason) == (False, "CARD_NOT_YET_VALID")


async def test_eligibility_refusals(insurance):
    stub, tokens, _, _ = insurance
    err = await refused(stub.CheckEligibility(pb.CheckEligibilityRequest(card_identifier="12-34"),
                                              metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["card_identifier"]
    await refused(stub.CheckEligibility(pb.CheckEligibilityRequest(card_identifier="9999999999"),
                                        metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.NOT_FOUND)
    err = await refused(stub.CheckEligibility(pb.CheckEligibilityRequest(
        card_identifier="9999999999", date=common_pb2.Date(year=2026, month=2, day=30)),
        metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["date"]


async def test_a_quote_splits_each_line_and_states_its_rounding(insurance, store):
    stub, tokens, _, _ = insurance
    m = new_member(4)
    await store.upsert_member(m)
    reply = await stub.QuoteCoverage(pb.QuoteCoverageRequest(
        card_identifier=m.citizen_id, date=NOV30, facility_code="01001",
        lines=[pb.QuoteLine(line_number=1, drug_code="B01AF01-20T", quantity=30, unit_price_vnd=58_000),
               pb.QuoteLine(line_number=2, drug_code="M01AX05-500C", quantity=60, unit_price_vnd=1_600)]),
        metadata=auth(tokens, "service-pharmacy"))
    # Xarelto at ratio 50: 1,740,000 -> insured 870,000 -> fund 80% 696,000; glucosamine not covered
    assert [(l.insured_vnd, l.fund_vnd, l.patient_vnd, l.reason_code) for l in reply.lines] == [
        (870_000, 696_000, 1_044_000, "OK"), (0, 0, 96_000, "NOT_COVERED")]
    assert (reply.fund_total_vnd, reply.patient_total_vnd) == (696_000, 1_140_000)
    assert "half up" in reply.rounding_rule and reply.quote_id and reply.member_id == m.member_id


async def test_quote_refusals_name_the_line(insurance, store):
    stub, tokens, _, _ = insurance
    m = new_member(4)
    await store.upsert_member(m)

    def request(*lines, day=NOV30):
        return pb.QuoteCoverageRequest(card_identifier=m.member_id, date=day, lines=list(lines))

    err = await refused(stub.QuoteCoverage(request(pb.QuoteLine(drug_code="NOPE", quantity=1, unit_price_vnd=1)),
                                           metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["lines[0].drug_code"]
    err = await refused(stub.QuoteCoverage(request(pb.QuoteLine(drug_code="N02BE01-500T", quantity=0)),
                                           metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["lines[0].quantity"]
    await refused(stub.QuoteCoverage(request(), metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.INVALID_ARGUMENT)
    err = await refused(stub.QuoteCoverage(request(pb.QuoteLine(drug_code="N02BE01-500T", quantity=1),
                                                   day=common_pb2.Date(year=2027, month=3, day=1)),
                                           metadata=auth(tokens, "pharmacy-a")), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason_of(err) == "CARD_NOT_VALID_ON_DATE"
    await refused(stub.QuoteCoverage(request(pb.QuoteLine(drug_code="N02BE01-500T", quantity=1)),
                                     metadata=auth(tokens, "insurer")), grpc.StatusCode.PERMISSION_DENIED)


async def test_get_claim_is_for_insurers_and_says_when_there_is_none(insurance):
    stub, tokens, _, _ = insurance
    await refused(stub.GetClaim(pb.GetClaimRequest(claim_id="c-none"), metadata=auth(tokens, "pharmacy-a")),
                  grpc.StatusCode.PERMISSION_DENIED)
    await refused(stub.GetClaim(pb.GetClaimRequest(claim_id="c-none"), metadata=auth(tokens, "insurer")),
                  grpc.StatusCode.NOT_FOUND)
    err = await refused(stub.GetClaim(pb.GetClaimRequest(), metadata=auth(tokens, "insurer")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert fields_of(err) == ["claim_id"]


async def test_the_member_import_is_idempotent_and_reports_rejections(tmp_path, store):
    a, b = new_member(2), new_member(4)
    header = "card_code,social_security_number,citizen_id,full_name,date_of_birth,sex,valid_from,valid_to," \
             "registered_facility,copay_exempt_from,five_years_from"

    def row(m, cccd=None):
        c = m.cards[0]
        return (f"{c.card_code},{m.member_id},{cccd or m.citizen_id},{m.full_name},1970-01-01,female,"
                f"{c.valid_from},{c.valid_to},01001,,")
    path = tmp_path / "members.csv"
    path.write_text("\n".join([header, row(a), row(b), row(b, cccd=a.citizen_id), "broken,row"]) + "\n",
                    encoding="utf-8")
    settings = Settings.from_env()
    accepted, changed, unchanged, rejected = await import_members(path, settings)
    assert (accepted, changed) == (2, 2)
    assert [(r.row, r.reason) for r in rejected] == [
        (4, f"citizen_id already belongs to member {a.member_id}"), (5, "wrong number of fields")]
    again = await import_members(path, settings)
    assert again[0:3] == (2, 0, 2)  # nothing new the second time
    assert (await store.member(b.member_id)).cards[0].valid_to == date(2026, 12, 31)
