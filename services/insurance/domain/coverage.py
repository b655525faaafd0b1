"""What the fund pays for drug lines (Decision 130/QD-BYT; Decree 146/2018 Art. 14).

Money is whole dong. Rounding happens per line, half up, in two steps: the insured
amount (quantity x unit price x ratio / 100), then the fund's share of it (x benefit % /
100). The patient pays the rest of the line's price, so fund + patient = price exactly."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.kernel.drugs import Drug
from services.insurance.domain.model import BenefitLevel, Member, Rules

ROUNDING_RULE = ("whole dong per line, half up: insured = qty x price x ratio / 100, then "
                 "fund = insured x benefit% / 100; patient = qty x price - fund")


def div_round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


@dataclass(frozen=True)
class LineInput:
    line_number: int
    drug_code: str
    quantity: int
    unit_price_vnd: int


@dataclass(frozen=True)
class LineAmounts:
    line_number: int
    drug_code: str
    covered: bool
    payment_ratio: int
    price_vnd: int       # quantity x unit price
    insured_vnd: int
    fund_vnd: int
    copay_vnd: int       # the patient's share of the insured amount
    patient_vnd: int     # everything the patient pays: co-payment and what is not insured
    reason_code: str


class LineTotals:
    """Totals over `lines`, for anything holding lines with the four amounts."""

    lines: tuple

    @property
    def insured_total(self) -> int:
        return sum(line.insured_vnd for line in self.lines)

    @property
    def fund_total(self) -> int:
        return sum(line.fund_vnd for line in self.lines)

    @property
    def patient_total(self) -> int:
        return sum(line.patient_vnd for line in self.lines)

    @property
    def copay_total(self) -> int:
        return sum(line.copay_vnd for line in self.lines)


@dataclass(frozen=True)
class Split(LineTotals):
    lines: tuple[LineAmounts, ...]
    benefit_percent: int
    exempt: bool
    exempt_reason: str


def insured_amount(quantity: int, unit_price: int, ratio: int, covered: bool, level: BenefitLevel) -> tuple[int, int]:
    """(ratio applied, insured amount) of one line for this benefit level."""
    if not covered:
        if level.include_out_of_scope:
            return 100, quantity * unit_price
        return 0, 0
    applied = ratio if level.apply_payment_ratio else 100
    return applied, div_round_half_up(quantity * unit_price * applied, 100)


def split(lines: list[tuple[LineInput, Drug]], member: Member, rules: Rules, day: date, *,
          yearly_exempt: bool = False) -> Split:
    """The fund's and the patient's share of each line for this member on this day.
    `yearly_exempt` says the member's co-payments this year already crossed the threshold."""
    card = member.card_on(day)
    if card is None:
        raise ValueError("no card valid on the day")
    level = rules.benefit_on(card.benefit_digit, day)
    exemption = rules.exemption_on(day)
    base = rules.base_salary_on(day)
    staged = []
    for line, drug in lines:
        coverage = rules.coverage_on(drug, day)
        ratio, insured = insured_amount(line.quantity, line.unit_price_vnd, coverage.payment_ratio,
                                        coverage.covered, level)
        staged.append((line, coverage, ratio, insured))
    visit_cost = sum(insured for *_, insured in staged)
    if member.copay_exempt_from is not None and member.copay_exempt_from <= day:
        exempt, why = True, "COPAY_EXEMPTION_CERTIFICATE"
    elif yearly_exempt:
        exempt, why = True, "COPAY_OVER_SIX_MONTHS_BASE_SALARY"
    elif 100 * visit_cost < exemption.small_visit_percent * base:
        exempt, why = True, "VISIT_UNDER_15_PERCENT_BASE_SALARY"
    else:
        exempt, why = False, ""
    percent = 100 if exempt else level.percent
    out = []
    for line, coverage, ratio, insured in staged:
        fund = insured if exempt else div_round_half_up(insured * percent, 100)
        price = line.quantity * line.unit_price_vnd
        reason = "OK" if coverage.covered else ("OUT_OF_SCOPE_COVERED" if insured else "NOT_COVERED")
        out.append(LineAmounts(line.line_number, line.drug_code, coverage.covered, ratio, price, insured, fund,
                               insured - fund, price - fund, reason))
    return Split(tuple(out), percent, exempt, why)


def yearly_threshold(rules: Rules, day: date) -> int:
    return rules.exemption_on(day).copay_threshold_months * rules.base_salary_on(day)
