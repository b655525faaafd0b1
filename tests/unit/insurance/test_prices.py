"""The reference price chain (Decree 188/2025 art. 60): the facility's winning bid, else the
national price, else the provincial one, else the lowest bid of a same-level public facility
in the province; dated; and what a sale above it costs whom."""
from dataclasses import replace
from datetime import date

import pytest

from services.insurance.domain import adjudication as adj
from services.insurance.domain.adjudication import Claim, ClaimLine
from services.insurance.domain.coverage import LineInput, split
from services.insurance.domain.prices import (FACILITY_BID, NATIONAL, PROVINCE_LOWEST_BID, PROVINCIAL, Facility,
                                              PriceList)
from services.insurance.domain.state import MemberState
from tests.support.members import member, prescription_facts

NOV = date(2026, 11, 30)
FACILITIES = {"01001": Facility("01001", "Hà Nội", "specialised", True),
              "01002": Facility("01002", "Hà Nội", "specialised", True),
              "01003": Facility("01003", "Hà Nội", "specialised", True),
              "01004": Facility("01004", "Hà Nội", "basic", True),
              "01005": Facility("01005", "Hà Nội", "specialised", False),
              "79001": Facility("79001", "TP. Hồ Chí Minh", "specialised", True)}


def unpriced(rules, code):
    """The drug as if the formulary carried no national price for it."""
    return replace(rules.drugs[code], unit_price_vnd=0)


def test_each_step_of_the_chain_in_its_order(rules):
    drug = unpriced(rules, "C10AA05-20T")
    prices = PriceList(FACILITIES,
                       bids={("01001", drug.code): ((date(2025, 1, 1), 14_000),),
                             ("01002", drug.code): ((date(2025, 1, 1), 12_500),),
                             ("01003", drug.code): ((date(2025, 1, 1), 13_000),),
                             ("01004", drug.code): ((date(2025, 1, 1), 9_000),),     # another level
                             ("01005", drug.code): ((date(2025, 1, 1), 8_000),),     # private
                             ("79001", drug.code): ((date(2025, 1, 1), 7_000),)},    # another province
                       national={drug.code: ((date(2026, 6, 1), 15_000),)},
                       provincial={("Hà Nội", drug.code): ((date(2026, 1, 1), 15_500),)})
    own = prices.reference(drug, "01001", NOV)
    assert (own.unit_price_vnd, own.basis) == (14_000, FACILITY_BID)
    national = prices.reference(drug, "01006", NOV)           # no bid of its own
    assert (national.unit_price_vnd, national.basis) == (15_000, NATIONAL)
    assert prices.reference(replace(drug, code="X"), "01001", NOV) is None   # no row for X anywhere
    before_national = prices.reference(drug, "01004", date(2026, 3, 1))
    assert before_national.basis == FACILITY_BID              # 01004 has its own bid
    unbid = PriceList(FACILITIES, bids={k: v for k, v in prices.bids.items() if k[0] != "01003"},
                      provincial=prices.provincial)
    assert (unbid.reference(drug, "01003", date(2026, 3, 1)).unit_price_vnd,
            unbid.reference(drug, "01003", date(2026, 3, 1)).basis) == (15_500, PROVINCIAL)
    peers = PriceList(FACILITIES, bids=unbid.bids)
    lowest = peers.reference(drug, "01003", NOV)
    # the lowest same-level public bid in Hà Nội: 01002's 12,500, not the basic, private or HCMC ones
    assert (lowest.unit_price_vnd, lowest.basis, lowest.scope) == (12_500, PROVINCE_LOWEST_BID, "01002")
    assert peers.reference(drug, "01003", date(2024, 12, 31)) is None   # nothing in force yet


def test_the_facility_s_last_winning_bid_is_the_one_in_force_on_the_day(rules):
    drug = rules.drugs["N02BE01-500T"]
    assert rules.prices.reference(drug, "01001", date(2026, 5, 31)).unit_price_vnd == 1_000
    assert rules.prices.reference(drug, "01001", date(2026, 6, 1)).unit_price_vnd == 1_050
    assert rules.prices.reference(drug, "79001", NOV).basis == NATIONAL  # the formulary's national price


def test_a_sale_above_the_reference_price_pays_on_the_reference_and_the_patient_the_excess(rules):
    # paracetamol 500 mg declared at 10,000,000 a tablet; Demo A's bid is 1,050
    s = split([(LineInput(1, "N02BE01-500T", 20, 10_000_000), rules.drugs["N02BE01-500T"])], member(4), rules, NOV,
              facility="01001")
    line = s.lines[0]
    assert (line.reason_code, line.reference_price_vnd, line.price_basis) == ("PRICE_ABOVE_REFERENCE", 1_050,
                                                                              FACILITY_BID)
    assert (line.insured_vnd, line.fund_vnd, line.patient_vnd) == (21_000, 21_000, 199_979_000)
    at_or_below = split([(LineInput(1, "N02BE01-500T", 20, 900), rules.drugs["N02BE01-500T"])], member(4), rules,
                        NOV, facility="01001").lines[0]
    assert (at_or_below.reason_code, at_or_below.insured_vnd) == ("OK", 18_000)   # the sale price when lower


def test_a_drug_with_no_price_in_the_chain_is_not_covered_and_says_why(rules):
    rules = replace(rules, drugs={**rules.drugs, "C10AA05-20T": unpriced(rules, "C10AA05-20T")},
                    prices=replace(rules.prices, provincial={}, bids={}))
    line = split([(LineInput(1, "C10AA05-20T", 30, 16_500), rules.drugs["C10AA05-20T"])], member(4), rules, NOV,
                 facility="01001").lines[0]
    assert (line.reason_code, line.covered, line.insured_vnd, line.fund_vnd, line.patient_vnd) == (
        "NO_REFERENCE_PRICE", False, 0, 0, 495_000)


@pytest.mark.parametrize("asked", [21_000, 200_000_000])
def test_adjudication_reduces_a_line_above_its_reference_price(rules, asked):
    facts = prescription_facts((1, "N02BE01-500T", 20))
    claim = Claim("c1", "d1", "0123456789", "DN4010123456789", facts.code, NOV,
                  (ClaimLine(1, "N02BE01-500T", 20, 10_000_000, asked),), "PH0001")
    decision, _, _ = adj.adjudicate(claim, member(4), rules, MemberState(), facts=facts, quoted=None)
    line = decision.lines[0]
    assert (decision.outcome, line.outcome, line.reason) == (adj.CLAIM_PARTIAL, adj.REDUCED, "PRICE_ABOVE_REFERENCE")
    assert (line.reference_price_vnd, line.insured_vnd, line.fund_vnd) == (1_050, 21_000, 21_000)


def test_adjudication_rejects_a_card_that_is_not_the_prescription_s_patient(rules):
    m = member(4)
    line = ClaimLine(1, "N02BE01-500T", 20, 1_050, 21_000)
    cases = {"someone else": prescription_facts((1, "N02BE01-500T", 20), citizen_id="079088001234"),
             "another card recorded": prescription_facts((1, "N02BE01-500T", 20), citizen_id="",
                                                         card="DN4019999999999"),
             "no identity": prescription_facts((1, "N02BE01-500T", 20), citizen_id="")}
    for case, facts in cases.items():
        claim = Claim("c1", "d1", m.member_id, m.cards[0].card_code, facts.code, NOV, (line,), "PH0001")
        decision, _, state = adj.adjudicate(claim, m, rules, MemberState(), facts=facts, quoted=None)
        assert (decision.outcome, decision.reason, decision.fund_total) == (adj.CLAIM_REJECTED, "PATIENT_NOT_MEMBER",
                                                                            0), case
        assert state.year(2026).copay == 0
    own_card = prescription_facts((1, "N02BE01-500T", 20), citizen_id="", card=m.cards[0].card_code)
    claim = Claim("c1", "d1", m.member_id, m.cards[0].card_code, own_card.code, NOV, (line,), "PH0001")
    assert adj.adjudicate(claim, m, rules, MemberState(), facts=own_card, quoted=None)[0].outcome == adj.CLAIM_APPROVED
