"""Claims judged by the rules of their dispense date, and the yearly accumulator."""
import json
from dataclasses import replace
from datetime import date

from services.insurance.domain import adjudication as adj
from services.insurance.domain.adjudication import Claim, ClaimLine, QuotedLine
from services.insurance.domain.state import MemberState, YearState
from tests.support.members import member, prescription_facts

NOV = date(2026, 11, 30)
PRESCRIBED = prescription_facts((1, "J01CR02-1GT", 28), (2, "B01AF01-20T", 30))


def claim(*lines, claim_id="c1", dispense_id="d1", card="DN4010123456789", day=NOV):
    # 28 x 16,200 = 453,600 insured (over 15% of base salary), fund 80% = 362,880
    lines = lines or (ClaimLine(1, "J01CR02-1GT", 28, 16_200, 362_880),)
    return Claim(claim_id, dispense_id, "0123456789", card, "01001abcdefg-c", day, tuple(lines), "PH0001")


def judge(rules, c, state=None, m=None, prescribed=PRESCRIBED, quoted=None):
    decision, _, after = adj.adjudicate(c, m or member(4), rules, state or MemberState(), facts=prescribed,
                                        quoted=quoted)
    return decision, after


def test_a_correct_claim_is_approved_and_its_co_payment_counted(rules):
    decision, state = judge(rules, claim())
    assert decision.outcome == adj.CLAIM_APPROVED
    line = decision.lines[0]
    assert (line.insured_vnd, line.fund_vnd, line.copay_vnd) == (453_600, 362_880, 90_720)
    assert state.year(2026).copay == 90_720


def test_a_claim_asking_too_much_is_reduced_to_what_the_rules_give(rules):
    decision, _ = judge(rules, claim(ClaimLine(1, "J01CR02-1GT", 28, 16_200, 453_600)))
    assert decision.outcome == adj.CLAIM_PARTIAL
    assert (decision.lines[0].outcome, decision.lines[0].reason, decision.lines[0].fund_vnd) == (
        adj.REDUCED, "FUND_REDUCED", 362_880)


def test_the_same_dispense_claimed_twice_is_rejected_and_not_counted(rules):
    _, state = judge(rules, claim())
    again, after = judge(rules, claim(claim_id="c2"), state)
    assert again.outcome == adj.CLAIM_REJECTED and again.reason == "DUPLICATE_CLAIM"
    assert after.year(2026).copay == 90_720
    resubmitted, same = judge(rules, claim(), state)  # the same claim id: already decided
    assert resubmitted is None and same == state


def test_a_line_claimed_twice_in_one_claim_is_rejected_once(rules):
    line = ClaimLine(1, "J01CR02-1GT", 7, 16_200, 90_720)
    decision, _ = judge(rules, claim(line, line))
    assert [(d.outcome, d.reason) for d in decision.lines] == [(adj.APPROVED, "OK"), (adj.REJECTED, "DUPLICATE_LINE")]


def test_eligibility_is_judged_on_the_dispense_date(rules):
    expired, _ = judge(rules, claim(day=date(2027, 1, 2)))
    assert expired.reason == "CARD_EXPIRED"
    early, _ = judge(rules, claim(day=date(2025, 12, 31)))
    assert early.reason == "CARD_NOT_YET_VALID"
    unknown, _, _ = adj.adjudicate(claim(), None, rules, MemberState(), facts=PRESCRIBED, quoted=None)
    assert unknown.reason == "UNKNOWN_MEMBER"
    mismatch, _ = judge(rules, claim(card="DN3010123456789"))
    assert mismatch.reason == "CARD_MISMATCH"


def test_lines_must_match_the_prescription(rules):
    over = ClaimLine(1, "J01CR02-1GT", 29, 16_200, 0)
    other_drug = ClaimLine(2, "N02BE01-500T", 14, 1_050, 0)  # line 2 prescribes rivaroxaban
    missing = ClaimLine(9, "J01CR02-1GT", 1, 16_200, 0)
    reasons = [d.reason for d in judge(rules, claim(over, other_drug, missing))[0].lines]
    assert reasons == ["QUANTITY_OVER_PRESCRIBED", "DRUG_NOT_PRESCRIBED", "NOT_ON_PRESCRIPTION"]
    same_ingredients = ClaimLine(1, "J01CR02-625T", 28, 5_800, 129_920)  # a substitution: other strength
    assert judge(rules, claim(same_ingredients))[0].outcome == adj.CLAIM_APPROVED
    unknown_rx, _ = judge(rules, claim(), prescribed=None)
    assert unknown_rx.reason == "PRESCRIPTION_UNKNOWN"


def test_lines_must_match_the_quote_when_there_is_one(rules):
    quoted = {1: QuotedLine(1, "J01CR02-1GT", 28, 15_000)}
    decision, _ = judge(rules, claim(), quoted=quoted)
    assert decision.lines[0].reason == "QUOTE_MISMATCH"
    decision, _ = judge(rules, claim(), quoted={1: QuotedLine(1, "J01CR02-1GT", 28, 16_200)})
    assert decision.outcome == adj.CLAIM_APPROVED


def test_coverage_on_the_dispense_date_decides(rules):
    ginkgo = prescription_facts((1, "N06DX02-40T", 90))
    m = member(4, valid=(date(2026, 1, 1), date(2027, 12, 31)))
    line = ClaimLine(1, "N06DX02-40T", 90, 4_600, 165_600)
    before, _ = judge(rules, claim(line, day=date(2026, 12, 31)), m=m, prescribed=ginkgo)
    after, _ = judge(rules, claim(line, day=date(2027, 1, 1)), m=m, prescribed=ginkgo)
    # 207,000 insured is the whole visit, under 15% of the base salary: paid in full, more than
    # the 80% the pharmacy asked for (the fund pays what the rules give)
    assert before.outcome == adj.CLAIM_APPROVED and before.lines[0].fund_vnd == 207_000
    assert (after.outcome, after.lines[0].reason, after.lines[0].fund_vnd) == (adj.CLAIM_REJECTED, "NOT_COVERED", 0)


def xarelto_claim(n, day, fund=696_000):
    # 30 x 58,000 at ratio 50: insured 870,000, fund 80% 696,000, co-payment 174,000
    return claim(ClaimLine(2, "B01AF01-20T", 30, 58_000, fund), claim_id=f"x{n}", dispense_id=f"dx{n}", day=day)


def test_crossing_six_months_of_base_salary_after_five_years_exempts_later_claims(rules):
    # threshold on 2026-11: 6 x 2,530,000 = 15,180,000; each claim adds 174,000 of co-payment
    m = member(4, five_years_from=date(2019, 1, 1))
    state = MemberState()
    for n in range(88):  # 88 x 174,000 = 15,312,000 > 15,180,000 (87 x = 15,138,000 is not)
        decision, state = judge(rules, xarelto_claim(n, NOV), state, m=m)
        assert decision.lines[0].fund_vnd == 696_000
    assert state.year(2026) == YearState(88 * 174_000, date(2026, 11, 30), "x87")
    later, state = judge(rules, xarelto_claim(88, NOV, fund=870_000), state, m=m)
    assert later.copay_exempt and later.lines[0].fund_vnd == 870_000 and later.copay_total == 0
    next_year, _ = judge(rules, xarelto_claim(89, date(2027, 1, 5)),
                         state, m=replace(m, cards=(replace(m.cards[0], valid_to=date(2027, 12, 31)),)))
    assert not next_year.copay_exempt  # the accumulator starts again each year


def test_without_five_consecutive_years_there_is_no_yearly_exemption(rules):
    m = member(4, five_years_from=date(2022, 6, 1))  # five years only from 2027-06-01
    state = MemberState()
    for n in range(90):
        _, state = judge(rules, xarelto_claim(n, NOV), state, m=m)
    assert state.year(2026).exempt_from is None


def test_a_reversal_takes_the_claim_out_of_the_accumulator_and_can_end_the_exemption(rules):
    m = member(4, five_years_from=date(2019, 1, 1))
    state = MemberState()
    for n in range(88):
        _, state = judge(rules, xarelto_claim(n, NOV), state, m=m)
    record, _, state = adj.reverse("x87", state, rules)
    assert record.status == adj.CLAIM_REVERSED
    assert state.year(2026) == YearState(87 * 174_000, None, None)
    again, _, same = adj.reverse("x87", state, rules)
    assert same == state and again.status == adj.CLAIM_REVERSED
    assert adj.reverse("nope", state, rules)[0] is None


def test_member_state_survives_its_json_form_and_marks_each_claim_event(rules):
    m = member(4, five_years_from=date(2019, 1, 1))
    state = MemberState()
    for n in range(88):
        _, state = judge(rules, xarelto_claim(n, NOV), state, m=m)
    state = state.marked("x1", "submitted", "e1").marked("x1", "submitted", "e2").marked("x1", "reversal", "r1")
    assert state.handled("x1", "submitted", "e1") and not state.handled("x1", "submitted", "e2")
    assert state.handled("x1", "reversal", "r1") and not state.handled("x2", "submitted", "e1")
    assert MemberState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert MemberState.from_json(None) == MemberState()
