"""Who the fund pays (Decree 188/2025 art. 60): a facility's dispensary within its claim, a
retail pharmacy nothing, the patient for lines the prescriber marked not available."""
from dataclasses import replace
from datetime import date

from services.insurance.domain import adjudication as adj
from services.insurance.domain.adjudication import Claim, ClaimLine
from services.insurance.domain.coverage import LineInput, at_retail, split
from services.insurance.domain.payees import Pharmacy, claims_for_facility
from services.insurance.domain.state import MemberState
from tests.support.members import member, prescription_facts

NOV = date(2026, 11, 30)


def test_only_the_prescribing_facility_s_own_dispensary_claims():
    assert claims_for_facility(Pharmacy("PH0001", "dispensary", "01001"), "01001")
    assert not claims_for_facility(Pharmacy("PH0003", "dispensary", "79001"), "01001")   # another facility's
    assert not claims_for_facility(Pharmacy("PH0002", "retail"), "01001")
    assert not claims_for_facility(None, "01001")                                       # unknown: no contract


def test_a_retail_quote_pays_nothing_at_the_counter_and_reimburses_only_flagged_lines(rules):
    lines = [(LineInput(1, "A10BA02-500T", 60, 1_500), rules.drugs["A10BA02-500T"]),
             (LineInput(2, "N02BE01-500T", 20, 1_050), rules.drugs["N02BE01-500T"])]
    s = at_retail(split(lines, member(4), rules, NOV, facility="01001", small_visit_exemption=False),
                  frozenset({1}))
    assert [(a.reason_code, a.fund_vnd, a.patient_vnd, a.reimbursable_vnd) for a in s.lines] == [
        ("REIMBURSABLE_TO_PATIENT", 0, 90_000, 57_600), ("RETAIL_NOT_COVERED", 0, 21_000, 0)]
    assert (s.payee, s.reimbursable_total, s.fund_total) == ("patient", 57_600, 0)
    none = at_retail(split(lines[1:], member(4), rules, NOV, facility="01001"), frozenset({1}))
    assert none.payee == "none" and none.fund_total == 0


def request(*lines, pharmacy="PH0002", claim_id="r1"):
    return Claim(claim_id, "d1", "0123456789", "DN4010123456789", "01001abcdefg-c", NOV, tuple(lines), pharmacy,
                 "patient", "HD-1")


def test_a_reimbursement_pays_a_flagged_line_capped_and_rejects_the_others(rules):
    facts = prescription_facts((1, "A10BA02-500T", 60), (2, "N02BE01-500T", 20))
    facts = replace(facts, not_available=frozenset({1}))
    decision, state = adj.reimburse(request(ClaimLine(1, "A10BA02-500T", 60, 1_500, 57_600),
                                            ClaimLine(2, "N02BE01-500T", 20, 1_050, 16_800)),
                                    member(4), rules, MemberState(), facts=facts, quoted=None)
    assert [(d.outcome, d.reason, d.fund_vnd) for d in decision.lines] == [
        (adj.REDUCED, "PRICE_ABOVE_REFERENCE", 57_600), (adj.REJECTED, "NOT_MARKED_NOT_AVAILABLE", 0)]
    assert state.year(2026).copay == 14_400          # the patient's 20% counts toward the yearly threshold
    again, same = adj.reimburse(request(ClaimLine(1, "A10BA02-500T", 60, 1_500, 57_600)), member(4), rules, state,
                                facts=facts, quoted=None)
    assert again is None and same == state
    stranger = replace(facts, patient=replace(facts.patient, citizen_id="079088001234"))
    refused, _ = adj.reimburse(request(ClaimLine(1, "A10BA02-500T", 60, 1_500, 57_600), claim_id="r2"), member(4),
                               rules, MemberState(), facts=stranger, quoted=None)
    assert refused.reason == "PATIENT_NOT_MEMBER"


def test_a_claim_from_a_retail_pharmacy_is_rejected(rules):
    facts = prescription_facts((1, "N02BE01-500T", 20))
    for pharmacy in ("PH0002", "PH0003", ""):
        claim = Claim("c1", "d1", "0123456789", "DN4010123456789", facts.code, NOV,
                      (ClaimLine(1, "N02BE01-500T", 20, 1_050, 21_000),), pharmacy)
        decision, _, _ = adj.adjudicate(claim, member(4), rules, MemberState(), facts=facts, quoted=None)
        assert (decision.outcome, decision.reason, decision.fund_total) == (adj.CLAIM_REJECTED, "RETAIL_NOT_COVERED",
                                                                            0), pharmacy
