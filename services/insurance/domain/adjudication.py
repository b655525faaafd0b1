"""Claim adjudication and the per-member yearly co-payment accumulator (DOMAIN.md 6-7).

A claim is judged by the rules of its dispense date: eligibility, the card, each drug's
coverage and ratio, duplicates, the prescription, the quote, and the amounts. The member's
state (domain/state.py) is immutable; functions return a new one."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from types import MappingProxyType

from services.kernel.drugs import Drug
from services.insurance.domain.coverage import (LineAmounts, LineInput, LineTotals, Sale, sale_of, split_visit,
                                                yearly_threshold)
from services.insurance.domain.model import Member, Rules
from services.insurance.domain.payees import FACILITY, RETAIL_NOT_COVERED, claims_for_facility
from services.insurance.domain.prescriptions import PrescriptionFacts, patient_problem
from services.insurance.domain.state import ClaimMark, MemberState, VisitState

APPROVED, REDUCED, REJECTED = "approved", "reduced", "rejected"
CLAIM_APPROVED, CLAIM_PARTIAL, CLAIM_REJECTED, CLAIM_REVERSED = "approved", "partial", "rejected", "reversed"


@dataclass(frozen=True)
class ClaimLine:
    line_number: int
    drug_code: str
    quantity: int
    unit_price_vnd: int
    fund_vnd: int            # what the pharmacy asks the fund for


@dataclass(frozen=True)
class Claim:
    claim_id: str
    dispense_id: str
    member_id: str
    card_code: str
    prescription_code: str
    dispensed_on: date
    lines: tuple[ClaimLine, ...]
    pharmacy_code: str = ""
    payee: str = FACILITY             # facility: a dispensary's claim; patient: a reimbursement request
    invoice_number: str = ""


@dataclass(frozen=True)
class PrescribedLine:
    line_number: int
    drug_code: str
    quantity: int
    ingredients: tuple[str, ...]


@dataclass(frozen=True)
class QuotedLine:
    line_number: int
    drug_code: str
    quantity: int
    unit_price_vnd: int


@dataclass(frozen=True)
class LineDecision:
    line_number: int
    drug_code: str
    outcome: str
    reason: str
    quantity: int
    unit_price_vnd: int
    payment_ratio: int = 0
    insured_vnd: int = 0
    fund_vnd: int = 0
    copay_vnd: int = 0
    patient_vnd: int = 0
    reference_price_vnd: int = 0


@dataclass(frozen=True)
class Decision(LineTotals):
    claim_id: str
    outcome: str
    reason: str
    lines: tuple[LineDecision, ...]
    benefit_percent: int = 0
    copay_exempt: bool = False
    visit_key: str = ""
    visit_cost_vnd: int = 0


def _rejected_all(claim: Claim, reason: str) -> Decision:
    return Decision(claim.claim_id, CLAIM_REJECTED, reason, tuple(
        LineDecision(l.line_number, l.drug_code, REJECTED, reason, l.quantity, l.unit_price_vnd,
                     patient_vnd=l.quantity * l.unit_price_vnd) for l in claim.lines))


def _card_problem(claim: Claim, member: Member | None, facts: PrescriptionFacts | None, rules: Rules) -> str:
    if member is None:
        return "UNKNOWN_MEMBER"
    card = member.card_on(claim.dispensed_on)
    if card is None:
        return "CARD_NOT_YET_VALID" if all(c.valid_from > claim.dispensed_on for c in member.cards) else "CARD_EXPIRED"
    if card.card_code != claim.card_code:
        return "CARD_MISMATCH"
    if facts is not None and patient_problem(member, facts.patient):
        return "PATIENT_NOT_MEMBER"
    if (claim.payee == FACILITY and facts is not None
            and not claims_for_facility(rules.pharmacy(claim.pharmacy_code), facts.facility_code)):
        return RETAIL_NOT_COVERED     # the fund pays facilities, never a retail pharmacy
    return ""


def prescribed_lines(facts: PrescriptionFacts, drugs: dict[str, Drug]) -> dict[int, PrescribedLine]:
    return {n: PrescribedLine(n, code, quantity, drugs[code].ingredient_names if code in drugs else ())
            for n, code, quantity in facts.lines}


def _line_problem(line: ClaimLine, drugs: dict[str, Drug], prescribed: dict[int, PrescribedLine] | None,
                  quoted: dict[int, QuotedLine] | None, seen: set[int]) -> str:
    if line.line_number in seen:
        return "DUPLICATE_LINE"
    if line.quantity <= 0 or line.unit_price_vnd < 0:
        return "INVALID_AMOUNT"
    drug = drugs.get(line.drug_code)
    if drug is None:
        return "UNKNOWN_DRUG"
    if prescribed is None:
        return "PRESCRIPTION_UNKNOWN"
    rx_line = prescribed.get(line.line_number)
    if rx_line is None:
        return "NOT_ON_PRESCRIPTION"
    if rx_line.drug_code != drug.code and tuple(sorted(rx_line.ingredients)) != tuple(sorted(drug.ingredient_names)):
        return "DRUG_NOT_PRESCRIBED"   # a substitution keeps the active ingredients
    if line.quantity > rx_line.quantity:
        return "QUANTITY_OVER_PRESCRIBED"
    if quoted is not None:
        q = quoted.get(line.line_number)
        if q is None or (q.drug_code, q.quantity, q.unit_price_vnd) != (line.drug_code, line.quantity,
                                                                           line.unit_price_vnd):
            return "QUOTE_MISMATCH"
    return ""


@dataclass(frozen=True)
class Adjustment:
    """An earlier claim of the same visit, repriced because this claim moved the visit's total."""
    claim_id: str
    lines: tuple[LineAmounts, ...]
    visit_cost_vnd: int
    exempt: bool
    benefit_percent: int


def _decide(line: ClaimLine, a: LineAmounts) -> LineDecision:
    price = line.quantity * line.unit_price_vnd
    if a.insured_vnd == 0:
        return LineDecision(line.line_number, line.drug_code, REJECTED, a.reason_code, line.quantity,
                            line.unit_price_vnd, a.payment_ratio, patient_vnd=price,
                            reference_price_vnd=a.reference_price_vnd)
    if a.reason_code == "PRICE_ABOVE_REFERENCE":
        outcome, reason = REDUCED, a.reason_code
    elif line.fund_vnd > a.fund_vnd:
        outcome, reason = REDUCED, "FUND_REDUCED"
    else:
        outcome, reason = APPROVED, a.reason_code
    # The fund pays what the rules give, whatever the pharmacy asked: a quote made before an
    # earlier sale of the visit was adjudicated may have asked for more or less.
    return LineDecision(line.line_number, line.drug_code, outcome, reason, line.quantity, line.unit_price_vnd,
                        a.payment_ratio, a.insured_vnd, a.fund_vnd, a.copay_vnd, a.patient_vnd, a.reference_price_vnd)


def _paid(lines: tuple[LineAmounts, ...]) -> tuple[tuple[int, int, int], ...]:
    return tuple((a.insured_vnd, a.fund_vnd, a.copay_vnd) for a in lines)


def reprice_visit(visit: VisitState, rules: Rules, skip: str) -> tuple[bool, int, dict[str, tuple[LineAmounts, ...]],
                                                                         list[Adjustment], VisitState]:
    """Shares the visit out again; every sale but `skip` whose amounts moved is an adjustment."""
    under, cost, shared = split_visit(list(visit.sales), other_costs_vnd=visit.other_costs_vnd, rules=rules,
                                      visit_day=visit.day)
    adjustments = [Adjustment(sale.sale_id, shared[sale.sale_id], cost, exempt := under or bool(sale.exempt_reason),
                              100 if exempt else sale.benefit_percent)
                   for sale in visit.sales
                   if sale.sale_id != skip and visit.paid.get(sale.sale_id) != _paid(shared[sale.sale_id])]
    paid = {sale.sale_id: _paid(shared[sale.sale_id]) for sale in visit.sales}
    return under, cost, shared, adjustments, replace(visit, paid=paid)


def _already(claim: Claim, member: Member | None, rules: Rules, state: MemberState,
             facts: PrescriptionFacts | None) -> tuple[bool, Decision | None, MemberState]:
    """What is decided before any line is read: (done, decision, state). A resubmitted claim
    id is done with no decision; a second claim for a dispense, or a card problem, is rejected."""
    if claim.claim_id in state.claims:
        return True, None, state
    if claim.dispense_id in state.dispenses:
        return True, _rejected_all(claim, "DUPLICATE_CLAIM"), state  # another claim for a dispense already claimed
    problem = _card_problem(claim, member, facts, rules)
    if problem:
        decision = _rejected_all(claim, problem)
        return True, decision, _record(state, claim, decision)
    return False, None, state


def _verdicts(claim: Claim, rules: Rules, facts: PrescriptionFacts | None, quoted: dict[int, QuotedLine] | None,
              *, flagged_only: bool = False) -> dict[int, str]:
    """Each line's problem, empty when the fund may pay it; `flagged_only`: only lines the
    prescriber marked not available at the facility (a reimbursement)."""
    prescribed = prescribed_lines(facts, rules.drugs) if facts is not None else None
    seen: set[int] = set()
    verdicts: dict[int, str] = {}
    for index, line in enumerate(claim.lines):
        verdicts[index] = _line_problem(line, rules.drugs, prescribed, quoted, seen)
        if flagged_only and not verdicts[index] and line.line_number not in facts.not_available:
            verdicts[index] = "NOT_MARKED_NOT_AVAILABLE"
        seen.add(line.line_number)
    return verdicts


def _sale(claim: Claim, eligible: list, member: Member, rules: Rules, state: MemberState,
          facts: PrescriptionFacts) -> Sale:
    day = claim.dispensed_on
    return sale_of(claim.claim_id, [(LineInput(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd),
                                     rules.drugs[l.drug_code]) for _, l in eligible],
                   member, rules, day, facility=facts.facility_code, yearly_exempt=state.exempt_on(day))


def _decision(claim: Claim, verdicts: dict[int, str], amounts: dict[int, LineAmounts], benefit: int, exempt: bool,
              visit_key: str = "", visit_cost: int = 0) -> Decision:
    decided = [LineDecision(line.line_number, line.drug_code, REJECTED, verdicts[index], line.quantity,
                            line.unit_price_vnd, patient_vnd=line.quantity * line.unit_price_vnd)
               if verdicts[index] else _decide(line, amounts[index]) for index, line in enumerate(claim.lines)]
    outcomes = {d.outcome for d in decided}
    overall = CLAIM_APPROVED if outcomes == {APPROVED} else CLAIM_REJECTED if outcomes == {REJECTED} else CLAIM_PARTIAL
    return Decision(claim.claim_id, overall, "" if overall != CLAIM_REJECTED else decided[0].reason,
                    tuple(decided), benefit, exempt, visit_key, visit_cost)


def adjudicate(claim: Claim, member: Member | None, rules: Rules, state: MemberState, *,
               facts: PrescriptionFacts | None, quoted: dict[int, QuotedLine] | None
               ) -> tuple[Decision | None, list[Adjustment], MemberState]:
    """None when this very claim (its id) was adjudicated before: a resubmission changes nothing.
    The claim's sale joins its visit; earlier sales of the visit whose share moved come back as
    adjustments (the accumulators already hold their new co-payments)."""
    done, decision, state = _already(claim, member, rules, state, facts)
    if done:
        return decision, [], state
    verdicts = _verdicts(claim, rules, facts, quoted)
    eligible = [(i, l) for i, l in enumerate(claim.lines) if not verdicts[i]]
    amounts: dict[int, LineAmounts] = {}
    adjustments: list[Adjustment] = []
    benefit, exempt, visit_key, visit_cost = 0, False, "", 0
    if eligible:
        sale = _sale(claim, eligible, member, rules, state, facts)
        stated, day = facts.visit, claim.dispensed_on
        visit_key = stated.key
        visit = state.visits.get(visit_key) or VisitState(stated.day or day, stated.other_costs_vnd,
                                                          stated.stated_at.isoformat())
        visit = replace(visit.with_costs(stated.other_costs_vnd, stated.stated_at.isoformat()),
                        sales=(*visit.sales, sale))
        under, visit_cost, shared, adjustments, visit = reprice_visit(visit, rules, claim.claim_id)
        amounts = {i: a for (i, _), a in zip(eligible, shared[claim.claim_id])}
        exempt = under or bool(sale.exempt_reason)
        benefit = 100 if exempt else sale.benefit_percent
        state = state.with_visit(visit_key, visit, claim.claim_id, latest=day)
    decision = _decision(claim, verdicts, amounts, benefit, exempt, visit_key, visit_cost)
    state = _accumulate(_record(state, claim, decision), claim.claim_id, claim.dispensed_on, decision.copay_total,
                        member, rules)
    return decision, adjustments, _apply_adjustments(state, adjustments, member, rules)


def reimburse(claim: Claim, member: Member | None, rules: Rules, state: MemberState, *,
              facts: PrescriptionFacts | None, quoted: dict[int, QuotedLine] | None
              ) -> tuple[Decision | None, MemberState]:
    """A retail sale's request to reimburse the patient for lines the prescriber marked not
    available at the facility: the card, the patient, each line against the signed
    prescription and its flag, the amount capped at the facility's price with the drug's ratio
    and the member's benefit level (no small-visit exemption: the visit is the facility's).
    None when this request was decided before."""
    done, decision, state = _already(claim, member, rules, state, facts)
    if done:
        return decision, state
    verdicts = _verdicts(claim, rules, facts, quoted, flagged_only=True)
    eligible = [(i, l) for i, l in enumerate(claim.lines) if not verdicts[i]]
    amounts: dict[int, LineAmounts] = {}
    benefit, exempt = 0, False
    if eligible:
        sale = _sale(claim, eligible, member, rules, state, facts)
        _, _, shared = split_visit([sale], other_costs_vnd=0, rules=rules, visit_day=claim.dispensed_on,
                                   small_visit_exemption=False)
        amounts = {i: a for (i, _), a in zip(eligible, shared[claim.claim_id])}
        exempt = bool(sale.exempt_reason)
        benefit = 100 if exempt else sale.benefit_percent
    decision = _decision(claim, verdicts, amounts, benefit, exempt)
    state = _accumulate(_record(state, claim, decision), claim.claim_id, claim.dispensed_on, decision.copay_total,
                        member, rules)
    return decision, state


def _record(state: MemberState, claim: Claim, decision: Decision) -> MemberState:
    return state.with_claim(claim.claim_id, ClaimMark(claim.dispensed_on, decision.copay_total, decision.outcome),
                            claim.dispense_id)


def _accumulate(state: MemberState, claim_id: str, day: date, copay: int, member: Member | None,
                rules: Rules) -> MemberState:
    """Adds `copay` (negative: gives back) to the member's year of `day`."""
    year = state.year(day.year)
    year = replace(year, copay=year.copay + copay)
    threshold = yearly_threshold(rules, day)
    if (year.exempt_from is None and member is not None and member.five_consecutive_years_on(day)
            and year.copay > threshold):
        # From the next claim on: this one already had its co-payment.
        year = replace(year, exempt_from=day, exempt_claim=claim_id)
    elif year.exempt_from is not None and year.copay <= threshold:
        year = replace(year, exempt_from=None, exempt_claim=None)
    return state.with_year(day.year, year)


def _apply_adjustments(state: MemberState, adjustments: list[Adjustment], member: Member | None,
                       rules: Rules) -> MemberState:
    for adjustment in adjustments:
        mark = state.claims.get(adjustment.claim_id)
        if mark is None or mark.status == CLAIM_REVERSED:
            continue
        copay = sum(a.copay_vnd for a in adjustment.lines)
        state = _accumulate(state, adjustment.claim_id, mark.day, copay - mark.copay, member, rules)
        state = state.with_claim(adjustment.claim_id, replace(mark, copay=copay))
    return state


def reverse(claim_id: str, state: MemberState, rules: Rules, member: Member | None = None
            ) -> tuple[ClaimMark | None, list[Adjustment], MemberState]:
    """Undoes a claim's effect on the accumulator and on its visit. Returns the claim's mark
    (None when the claim is unknown), the other claims of the visit it repriced, and the new
    state; reversing twice changes nothing the second time."""
    mark = state.claims.get(claim_id)
    if mark is None:
        return None, [], state
    adjustments: list[Adjustment] = []
    if mark.status != CLAIM_REVERSED:
        state = _accumulate(state, claim_id, mark.day, -mark.copay, member, rules)
        mark = replace(mark, status=CLAIM_REVERSED)
        state = state.with_claim(claim_id, mark)
        key = state.claim_visits.get(claim_id)
        visit = state.visits.get(key) if key else None
        if visit is not None:
            visit = replace(visit, sales=tuple(s for s in visit.sales if s.sale_id != claim_id),
                            paid=MappingProxyType({c: p for c, p in visit.paid.items() if c != claim_id}))
            _, _, _, adjustments, visit = reprice_visit(visit, rules, claim_id)
            state = _apply_adjustments(state.with_visit(key, visit), adjustments, member, rules)
    return mark, adjustments, state


@dataclass(frozen=True)
class Adjudication:
    """A claim's outcome as published and as the insurer's staff read it."""
    claim_id: str
    member_id: str
    outcome: str
    adjudicated_at: datetime
    dispense_id: str = ""
    card_code: str = ""
    reason: str = ""
    fund_total_vnd: int = 0
    patient_total_vnd: int = 0
    benefit_percent: int = 0
    pharmacy_code: str = ""
    prescription_code: str = ""
    copay_exempt: bool = False
    dispensed_on: date | None = None
    lines: tuple[LineDecision, ...] = ()
    revision: int = 0                  # each adjustment publishes the claim again, one revision up
    adjusted_by: str = ""              # the claim whose arrival or reversal caused this revision
    visit_key: str = ""
    visit_cost_vnd: int = 0
    payee: str = FACILITY              # patient: the decision on a reimbursement request
    invoice_number: str = ""


def adjudication_of(claim: Claim, decision: Decision, now: datetime) -> Adjudication:
    return Adjudication(claim.claim_id, claim.member_id, decision.outcome, now, claim.dispense_id, claim.card_code,
                        decision.reason, decision.fund_total, decision.patient_total, decision.benefit_percent,
                        claim.pharmacy_code, claim.prescription_code, decision.copay_exempt, claim.dispensed_on,
                        decision.lines, visit_key=decision.visit_key, visit_cost_vnd=decision.visit_cost_vnd,
                        payee=claim.payee, invoice_number=claim.invoice_number)


def adjusted(previous: Adjudication, adjustment: Adjustment, by_claim: str, now: datetime) -> Adjudication:
    """The earlier claim with its visit lines repriced (its other lines stay as decided)."""
    new = {a.line_number: a for a in adjustment.lines}
    lines = tuple(replace(d, insured_vnd=new[d.line_number].insured_vnd, fund_vnd=new[d.line_number].fund_vnd,
                          copay_vnd=new[d.line_number].copay_vnd, patient_vnd=new[d.line_number].patient_vnd)
                  if d.line_number in new and d.outcome != REJECTED else d for d in previous.lines)
    return replace(previous, lines=lines, fund_total_vnd=sum(d.fund_vnd for d in lines),
                   patient_total_vnd=sum(d.patient_vnd for d in lines), copay_exempt=adjustment.exempt,
                   benefit_percent=adjustment.benefit_percent, revision=previous.revision + 1, adjusted_by=by_claim,
                   visit_cost_vnd=adjustment.visit_cost_vnd, adjudicated_at=now)


def reversal_of(previous: Adjudication | None, claim_id: str, member_id: str, reason: str,
                now: datetime) -> Adjudication:
    """The claim's last outcome, marked reversed (a reversal replaces the adjudication)."""
    base = previous or Adjudication(claim_id, member_id, CLAIM_REVERSED, now)
    return replace(base, claim_id=claim_id, member_id=member_id, outcome=CLAIM_REVERSED, reason=reason or "REVERSED",
                   adjudicated_at=now)
