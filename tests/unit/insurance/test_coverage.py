"""Worked examples of what the fund pays, with the arithmetic written out."""
from datetime import date

import pytest

from dataclasses import replace

from services.insurance.domain.coverage import LineInput, div_round_half_up, split
from tests.support.members import member

NOV = date(2026, 11, 30)


def priced(rules, code, price):
    """The rules with `code` at a national price of `price` a unit since 2000 (arithmetic
    examples at prices the formulary does not carry)."""
    return replace(rules, prices=replace(rules.prices, national={**rules.prices.national,
                                                                 code: ((date(2000, 1, 1), price),)}))


def quote(rules, m, day, *lines, yearly_exempt=False):
    return split([(LineInput(i + 1, code, qty, price), rules.drugs[code]) for i, (code, qty, price) in enumerate(lines)],
                 m, rules, day, yearly_exempt=yearly_exempt)


@pytest.mark.parametrize("digit, percent", [(4, 80), (3, 95), (2, 100)])
def test_benefit_percent_of_the_insured_amount(rules, digit, percent):
    # Augmentin 1g, covered at ratio 100: 28 x 16,200 = 453,600 insured (over 15% of base salary)
    s = quote(rules, member(digit), NOV, ("J01CR02-1GT", 28, 16_200))
    line = s.lines[0]
    assert line.insured_vnd == 453_600
    assert line.fund_vnd == 453_600 * percent // 100  # 362,880 / 430,920 / 453,600
    assert line.patient_vnd == 453_600 - line.fund_vnd
    assert s.benefit_percent == percent and not s.exempt


def test_a_payment_ratio_of_50_halves_the_insured_amount(rules):
    # Xarelto 20mg at ratio 50: 30 x 58,000 = 1,740,000; insured 870,000; fund 80% = 696,000
    line = quote(rules, member(4), NOV, ("B01AF01-20T", 30, 58_000)).lines[0]
    assert (line.payment_ratio, line.insured_vnd, line.fund_vnd) == (50, 870_000, 696_000)
    assert line.copay_vnd == 870_000 - 696_000 == 174_000
    assert line.patient_vnd == 1_740_000 - 696_000 == 1_044_000


def test_benefit_1_ignores_ratios_and_benefit_5_pays_outside_the_covered_list(rules):
    one = quote(rules, member(1), NOV, ("B01AF01-20T", 30, 58_000), ("M01AX05-500C", 60, 1_600))
    assert (one.lines[0].insured_vnd, one.lines[0].fund_vnd) == (1_740_000, 1_740_000)
    assert (one.lines[1].fund_vnd, one.lines[1].patient_vnd, one.lines[1].reason_code) == (0, 96_000, "NOT_COVERED")
    five = quote(rules, member(5), NOV, ("B01AF01-20T", 30, 58_000), ("M01AX05-500C", 60, 1_600))
    assert five.lines[1].fund_vnd == 60 * 1_600 == 96_000 and five.lines[1].reason_code == "OUT_OF_SCOPE_COVERED"
    assert five.patient_total == 0


def test_a_drug_outside_the_covered_list_is_paid_by_the_patient(rules):
    line = quote(rules, member(4), NOV, ("G04BE03-50T", 4, 180_000)).lines[0]  # Viagra, not covered
    assert (line.covered, line.insured_vnd, line.fund_vnd, line.patient_vnd) == (False, 0, 0, 720_000)


def test_a_visit_under_15_percent_of_base_salary_is_paid_in_full(rules):
    # base salary 2,530,000 from 2026-07-01: 15% is 379,500
    under = quote(rules, member(4), NOV, ("N02BE01-500T", 20, 1_050))  # 21,000 insured
    assert under.exempt and under.exempt_reason == "VISIT_UNDER_15_PERCENT_BASE_SALARY"
    assert under.lines[0].fund_vnd == 21_000 and under.patient_total == 0
    at = quote(priced(rules, "J01CR02-1GT", 379_500), member(4), NOV, ("J01CR02-1GT", 1, 379_500))  # exactly 15%
    assert not at.exempt and at.lines[0].fund_vnd == 303_600  # 80% of 379,500


def test_base_salary_is_the_one_in_force_on_the_day(rules):
    # 370,000 insured: 15% of 2,340,000 is 351,000 (not under) until 2026-06-30,
    # 15% of 2,530,000 is 379,500 (under) from 2026-07-01
    m = member(4, valid=(date(2026, 1, 1), date(2026, 12, 31)))
    rules = priced(rules, "J01CR02-1GT", 370_000)
    before = quote(rules, m, date(2026, 6, 30), ("J01CR02-1GT", 1, 370_000))
    after = quote(rules, m, date(2026, 7, 1), ("J01CR02-1GT", 1, 370_000))
    assert (before.exempt, before.lines[0].fund_vnd) == (False, 296_000)
    assert (after.exempt, after.lines[0].fund_vnd) == (True, 370_000)


def test_a_co_payment_exemption_pays_the_whole_insured_amount(rules):
    certificate = member(4, exempt_from=date(2026, 3, 1))
    s = quote(rules, certificate, NOV, ("B01AF01-20T", 30, 58_000))
    assert s.exempt and s.exempt_reason == "COPAY_EXEMPTION_CERTIFICATE"
    assert s.lines[0].fund_vnd == 870_000 and s.lines[0].copay_vnd == 0
    assert s.lines[0].patient_vnd == 870_000  # the part outside the ratio is still the patient's
    yearly = quote(rules, member(4), NOV, ("B01AF01-20T", 30, 58_000), yearly_exempt=True)
    assert yearly.exempt_reason == "COPAY_OVER_SIX_MONTHS_BASE_SALARY" and yearly.lines[0].fund_vnd == 870_000
    not_yet = quote(rules, member(4, exempt_from=date(2026, 12, 1)), NOV, ("B01AF01-20T", 30, 58_000))
    assert not not_yet.exempt


def test_coverage_changes_apply_from_their_date(rules):
    m = member(4, valid=(date(2026, 1, 1), date(2027, 12, 31)))
    before = quote(rules, m, date(2026, 12, 31), ("N06DX02-40T", 90, 4_600))
    after = quote(rules, m, date(2027, 1, 1), ("N06DX02-40T", 90, 4_600))
    assert (before.lines[0].covered, before.lines[0].payment_ratio, before.lines[0].insured_vnd) == (True, 50, 207_000)
    assert (after.lines[0].covered, after.lines[0].fund_vnd, after.lines[0].patient_vnd) == (False, 0, 414_000)


def test_no_card_on_the_day_is_no_quote(rules):
    with pytest.raises(ValueError):
        quote(rules, member(4), date(2027, 1, 1), ("N02BE01-500T", 20, 1_050))


def test_rounding_is_half_up_per_line_and_fund_plus_patient_is_the_price(rules):
    assert (div_round_half_up(5, 2), div_round_half_up(7, 2), div_round_half_up(4, 2)) == (3, 4, 2)
    # 5 x 100,001 = 500,005 at 95% = 475,004.75 -> 475,005
    rules = priced(rules, "J01CR02-1GT", 100_001)
    s = quote(rules, member(3), NOV, ("J01CR02-1GT", 5, 100_001))
    assert s.lines[0].fund_vnd == 475_005
    assert s.lines[0].fund_vnd + s.lines[0].patient_vnd == 500_005
    # 7 x 100,001 = 700,007 at 80% = 560,005.6 -> 560,006
    assert quote(rules, member(4), NOV, ("J01CR02-1GT", 7, 100_001)).lines[0].fund_vnd == 560_006
