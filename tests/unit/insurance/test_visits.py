"""The 15% threshold judged on the whole visit (Law on Health Insurance art. 22(1)): however a
visit's drug lines are split across sales, the fund's and the patient's totals equal those of
one sale of the same lines. Earlier claims of the visit are adjusted when a later sale (or a
reversal) moves the visit across the threshold."""
from datetime import date

from hypothesis import HealthCheck, given, settings, strategies as st

from services.insurance.domain import adjudication as adj
from services.insurance.domain.adjudication import Claim, ClaimLine
from services.insurance.domain.state import MemberState
from tests.support.members import member, prescription_facts

NOV = date(2026, 11, 30)
# (drug, reference price a unit, payment ratio)
DRUGS = [("N02BE01-500T", 1_050, 100), ("B01AF01-20T", 58_000, 50), ("M01AE01-400T", 1_800, 100),
         ("J01CR02-1GT", 16_200, 100), ("A11DB-3B", 800, 50), ("M01AX05-500C", 1_600, 0)]


def sell(rules, m, facts, sales, state=None):
    """Adjudicates `sales` (each a list of (line, drug, quantity, price)) in order; the final
    amounts of every claim (its outcome or its latest adjustment) and the state."""
    state = state or MemberState()
    final = {}
    for n, lines in enumerate(sales):
        claim = Claim(f"c{n}", f"d{n}", m.member_id, m.cards[0].card_code, facts.code, NOV,
                      tuple(ClaimLine(line, drug, qty, price, 0) for line, drug, qty, price in lines), "PH0001")
        decision, adjustments, state = adj.adjudicate(claim, m, rules, state, facts=facts, quoted=None)
        final[claim.claim_id] = [(d.line_number, d.fund_vnd, d.patient_vnd, d.copay_vnd) for d in decision.lines]
        for a in adjustments:
            final[a.claim_id] = [(x.line_number, x.fund_vnd, x.patient_vnd, x.copay_vnd) for x in a.lines]
    return final, state


def totals(final):
    return tuple(sum(line[i] for lines in final.values() for line in lines) for i in (1, 2, 3))


def test_one_prescription_sold_in_three_small_sales_pays_what_one_sale_would(rules):
    # Augmentin 14 x 16,200 = 226,800 and ibuprofen 15 x 1,800 = 27,000, visit examination
    # and tests 150,000: 403,800 in all, over 379,500 (15% of 2,530,000): 80% throughout.
    facts = prescription_facts((1, "J01CR02-1GT", 14), (2, "M01AE01-400T", 15), encounter="K-77", other_costs=150_000)
    m = member(4)
    one, one_state = sell(rules, m, facts, [[(1, "J01CR02-1GT", 14, 16_200), (2, "M01AE01-400T", 15, 1_800)]])
    three, state = sell(rules, m, facts, [[(2, "M01AE01-400T", 10, 1_800)], [(2, "M01AE01-400T", 5, 1_800)],
                                          [(1, "J01CR02-1GT", 14, 16_200)]])
    assert totals(one) == (203_040, 50_760, 50_760)
    assert totals(three) == totals(one)
    # the first two sales (27,000 with the 150,000) were paid in full until the third crossed
    # the threshold; they were adjusted to 80%
    assert three["c0"] == [(2, 14_400, 3_600, 3_600)] and three["c1"] == [(2, 7_200, 1_800, 1_800)]
    assert state.year(2026).copay == one_state.year(2026).copay == 50_760


def test_a_reversal_that_brings_the_visit_back_under_the_threshold_restores_full_payment(rules):
    facts = prescription_facts((1, "J01CR02-1GT", 14), (2, "M01AE01-400T", 15), encounter="K-2",
                               other_costs=200_000)
    m = member(4)
    final, state = sell(rules, m, facts, [[(2, "M01AE01-400T", 15, 1_800)], [(1, "J01CR02-1GT", 14, 16_200)]])
    assert final["c0"] == [(2, 21_600, 5_400, 5_400)]            # 200,000 + 27,000 + 226,800: over, 80%
    mark, adjustments, state = adj.reverse("c1", state, rules, m)
    assert mark.status == adj.CLAIM_REVERSED
    assert [(a.claim_id, [(x.fund_vnd, x.copay_vnd) for x in a.lines], a.exempt) for a in adjustments] == [
        ("c0", [(27_000, 0)], True)]                             # 227,000 without it: paid in full again
    assert state.year(2026).copay == 0


def test_the_hospital_s_later_statement_of_other_costs_counts(rules):
    m = member(4)
    first = prescription_facts((1, "M01AE01-400T", 15), encounter="K-1", other_costs=0)
    final, state = sell(rules, m, first, [[(1, "M01AE01-400T", 10, 1_800)]])
    assert final["c0"][0][1] == 18_000                            # paid in full
    later = prescription_facts((1, "M01AE01-400T", 15), code="01001abcdefh-c", encounter="K-1",
                               other_costs=400_000, stated_at=first.visit.stated_at.replace(hour=5))
    claim = Claim("c9", "d9", m.member_id, m.cards[0].card_code, later.code, NOV,
                  (ClaimLine(1, "M01AE01-400T", 5, 1_800, 0),), "PH0001")
    decision, adjustments, state = adj.adjudicate(claim, m, rules, state, facts=later, quoted=None)
    assert decision.visit_cost_vnd == 400_000 + 27_000 and not decision.copay_exempt
    assert [(a.claim_id, a.lines[0].fund_vnd) for a in adjustments] == [("c0", 14_400)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_split_of_a_visit_pays_what_one_sale_of_the_same_lines_pays(rules, data):
    picked = data.draw(st.lists(st.sampled_from(DRUGS), min_size=1, max_size=4, unique=True))
    lines = []
    for number, (drug, cap, _) in enumerate(picked, start=1):
        qty = data.draw(st.integers(1, 40))
        price = data.draw(st.sampled_from([cap, cap - 1, cap + 7, cap * 3]))
        lines.append((number, drug, qty, price))
    other = data.draw(st.sampled_from([0, 100_000, 300_000, 379_499]))
    digit = data.draw(st.sampled_from([2, 3, 4]))
    facts = prescription_facts(*[(n, d, q) for n, d, q, _ in lines], encounter="K-9", other_costs=other)
    pieces = []
    for number, drug, qty, price in lines:        # each line cut in up to three parts
        cuts = sorted(data.draw(st.lists(st.integers(1, qty - 1), max_size=2, unique=True))) if qty > 1 else []
        bounds = [0, *cuts, qty]
        pieces += [(number, drug, b - a, price) for a, b in zip(bounds, bounds[1:])]
    order = data.draw(st.permutations(pieces))
    count = data.draw(st.integers(1, len(order)))
    sales = [[] for _ in range(count)]
    for i, piece in enumerate(order):
        target = sales[i % count]
        if any(p[0] == piece[0] for p in target):  # a line once per sale: start another sale
            sales.append([piece])
        else:
            target.append(piece)
    m = member(digit)
    one, one_state = sell(rules, m, facts, [lines])
    split, state = sell(rules, m, facts, [s for s in sales if s])
    assert totals(split) == totals(one)
    assert state.year(2026).copay == one_state.year(2026).copay
