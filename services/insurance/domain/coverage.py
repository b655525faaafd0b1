"""What the fund pays for drug lines (Decision 130/QD-BYT; Decree 146/2018 Art. 14; Law on
Health Insurance art. 22(1); Decree 188/2025 art. 60).

Money is whole dong. Rounding happens per line group of a visit, half up, in two steps: the
insured amount (quantity x min(unit price, reference price) x ratio / 100), then the fund's
share of it (x benefit % / 100). The patient pays the rest of the line's price, so fund +
patient = price exactly."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from services.kernel.drugs import Drug
from services.insurance.domain.model import BenefitLevel, Member, Rules
from services.insurance.domain.payees import NONE, PATIENT, REIMBURSABLE_TO_PATIENT, RETAIL_NOT_COVERED

ROUNDING_RULE = ("whole dong per line, half up: insured = qty x min(price, reference price) x ratio / 100, then "
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
    reference_price_vnd: int = 0   # the most the fund pays a unit (0: no price in the chain)
    price_basis: str = ""          # which step of the chain gave it
    reimbursable_vnd: int = 0      # paid to the patient later, not at the counter (a retail sale)


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
    visit_cost_vnd: int = 0        # every in-scope cost of the visit the exemption was judged on
    payee: str = "facility"        # who the fund pays: facility | patient | none (payees.py)

    @property
    def reimbursable_total(self) -> int:
        return sum(line.reimbursable_vnd for line in self.lines)


@dataclass(frozen=True)
class PricedLine:
    """A sold line judged on its day: everything the fund's arithmetic starts from."""
    line_number: int
    drug_code: str
    quantity: int
    unit_price_vnd: int            # the sale price
    reference_price_vnd: int       # the cap; 0 when the chain has no price
    price_basis: str
    ratio: int                     # the payment ratio applied (100 under benefit 1, 100 out of scope under 5)
    insurable: bool                # whether any of it is insured
    reason: str                    # OK, PRICE_ABOVE_REFERENCE, NOT_COVERED, NO_REFERENCE_PRICE, OUT_OF_SCOPE_COVERED

    @property
    def price_vnd(self) -> int:
        return self.quantity * self.unit_price_vnd

    @property
    def covered(self) -> bool:
        """On the covered list and paid by the fund (out-of-scope cover under benefit 5 is not)."""
        return self.insurable and self.reason != "OUT_OF_SCOPE_COVERED"

    @property
    def group(self) -> tuple:
        """Lines of one group add up as one line of their summed quantity."""
        return (self.line_number, self.drug_code, self.unit_price_vnd, self.reference_price_vnd, self.ratio,
                self.insurable)

    def insured(self, quantity: int) -> int:
        if not self.insurable:
            return 0
        unit = min(self.unit_price_vnd, self.reference_price_vnd)
        return div_round_half_up(quantity * unit * self.ratio, 100)


def price_line(line: LineInput, drug: Drug, rules: Rules, level: BenefitLevel, facility: str,
               day: date) -> PricedLine:
    """The line's cap, ratio and whether the fund pays any of it, on `day`, for a prescription
    of `facility`. The fund never pays above the reference price; the excess is the patient's."""
    coverage = rules.coverage_on(drug, day)
    reference = rules.prices.reference(drug, facility, day)
    cap, basis = (reference.unit_price_vnd, reference.basis) if reference else (0, "")
    if not coverage.covered and not level.include_out_of_scope:
        return PricedLine(line.line_number, drug.code, line.quantity, line.unit_price_vnd, cap, basis, 0, False,
                          "NOT_COVERED")
    if reference is None:
        return PricedLine(line.line_number, drug.code, line.quantity, line.unit_price_vnd, 0, "", 0, False,
                          "NO_REFERENCE_PRICE")
    if not coverage.covered:
        ratio, reason = 100, "OUT_OF_SCOPE_COVERED"
    else:
        ratio, reason = (coverage.payment_ratio if level.apply_payment_ratio else 100), "OK"
    if line.unit_price_vnd > cap:
        reason = "PRICE_ABOVE_REFERENCE"
    return PricedLine(line.line_number, drug.code, line.quantity, line.unit_price_vnd, cap, basis, ratio, True, reason)


@dataclass(frozen=True)
class Sale:
    """One sale of a visit, priced: the unit the visit's arithmetic is shared out over."""
    sale_id: str
    lines: tuple[PricedLine, ...]
    benefit_percent: int
    exempt_reason: str = ""        # the member's own exemption on the sale's day, if any


def _cumulative(sales: list[Sale]) -> tuple[dict, dict]:
    """For each sale's line: the group's quantity before it and through it (sales in order)."""
    running: dict[tuple, int] = {}
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for sale in sales:
        for index, line in enumerate(sale.lines):
            before = running.get(line.group, 0)
            running[line.group] = before + line.quantity
            spans[(sale.sale_id, index)] = (before, before + line.quantity)
    return running, spans


def split_visit(sales: list[Sale], *, other_costs_vnd: int, rules: Rules, visit_day: date,
                small_visit_exemption: bool = True) -> tuple[bool, int, dict[str, tuple[LineAmounts, ...]]]:
    """Shares out one visit's costs over its sales, in order: (exempt because the visit is
    under the threshold, the visit's in-scope cost, each sale's lines).

    The exemption of Law on Health Insurance art. 22(1) is judged on the whole visit: every
    in-scope cost (`other_costs_vnd`, examination and tests, plus every drug sold) strictly
    below the threshold. Each line's amounts are the difference of its group's cumulative
    amounts through and before it, so however the lines are split across sales, their sums
    equal those of one sale of the same lines, to the dong."""
    groups, spans = _cumulative(sales)
    sample = {line.group: line for sale in sales for line in sale.lines}
    drugs_cost = sum(sample[g].insured(q) for g, q in groups.items())
    visit_cost = other_costs_vnd + drugs_cost
    exemption = rules.exemption_on(visit_day)
    under = small_visit_exemption and 100 * visit_cost < exemption.small_visit_percent * rules.base_salary_on(visit_day)
    shared: dict[str, tuple[LineAmounts, ...]] = {}
    for sale in sales:
        exempt = under or bool(sale.exempt_reason)
        out = []
        for index, line in enumerate(sale.lines):
            before, through = spans[(sale.sale_id, index)]
            insured = line.insured(through) - line.insured(before)
            if exempt:
                fund = insured
            else:
                fund = (div_round_half_up(line.insured(through) * sale.benefit_percent, 100)
                        - div_round_half_up(line.insured(before) * sale.benefit_percent, 100))
            out.append(LineAmounts(line.line_number, line.drug_code, line.covered,
                                   line.ratio, line.price_vnd, insured, fund, insured - fund, line.price_vnd - fund,
                                   line.reason, line.reference_price_vnd, line.price_basis))
        shared[sale.sale_id] = tuple(out)
    return under, visit_cost, shared


def member_exemption(member: Member, day: date, yearly_exempt: bool) -> str:
    """The member's own exemption from co-payment on `day` (not the visit's), or empty."""
    if member.copay_exempt_from is not None and member.copay_exempt_from <= day:
        return "COPAY_EXEMPTION_CERTIFICATE"
    if yearly_exempt:
        return "COPAY_OVER_SIX_MONTHS_BASE_SALARY"
    return ""


def sale_of(sale_id: str, lines: list[tuple[LineInput, Drug]], member: Member, rules: Rules, day: date, *,
            facility: str, yearly_exempt: bool) -> Sale:
    card = member.card_on(day)
    if card is None:
        raise ValueError("no card valid on the day")
    level = rules.benefit_on(card.benefit_digit, day)
    priced = tuple(price_line(line, drug, rules, level, facility, day) for line, drug in lines)
    return Sale(sale_id, priced, level.percent, member_exemption(member, day, yearly_exempt))


def split(lines: list[tuple[LineInput, Drug]], member: Member, rules: Rules, day: date, *, facility: str = "",
          yearly_exempt: bool = False, earlier: tuple[Sale, ...] = (), other_costs_vnd: int = 0,
          visit_day: date | None = None, small_visit_exemption: bool = True) -> Split:
    """The fund's and the patient's share of each line of a sale for this member on this day,
    after the `earlier` sales of the same visit. `yearly_exempt` says the member's
    co-payments this year already crossed the threshold."""
    sale = sale_of("", lines, member, rules, day, facility=facility, yearly_exempt=yearly_exempt)
    under, cost, shared = split_visit([*earlier, sale], other_costs_vnd=other_costs_vnd, rules=rules,
                                      visit_day=visit_day or day, small_visit_exemption=small_visit_exemption)
    why = sale.exempt_reason or ("VISIT_UNDER_15_PERCENT_BASE_SALARY" if under else "")
    return Split(shared[""], 100 if why else sale.benefit_percent, bool(why), why, cost)


def yearly_threshold(rules: Rules, day: date) -> int:
    return rules.exemption_on(day).copay_threshold_months * rules.base_salary_on(day)


def at_retail(split: Split, flagged: frozenset[int]) -> Split:
    """A sale outside the prescribing facility's dispensary: the patient pays every line at
    the counter; a line marked not available at the facility keeps its computed share as what
    BHXH reimburses the patient; the others are RETAIL_NOT_COVERED."""
    lines = []
    for a in split.lines:
        if a.line_number in flagged and a.insured_vnd > 0:
            lines.append(replace(a, fund_vnd=0, copay_vnd=0, patient_vnd=a.price_vnd, reimbursable_vnd=a.fund_vnd,
                                 reason_code=REIMBURSABLE_TO_PATIENT))
        else:
            lines.append(replace(a, covered=False, insured_vnd=0, fund_vnd=0, copay_vnd=0, patient_vnd=a.price_vnd,
                                 reimbursable_vnd=0, reason_code=RETAIL_NOT_COVERED))
    payee = PATIENT if any(line.reimbursable_vnd for line in lines) else NONE
    return replace(split, lines=tuple(lines), payee=payee)
