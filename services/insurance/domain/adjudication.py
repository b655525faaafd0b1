"""Claim adjudication and the per-member yearly co-payment accumulator (DOMAIN.md 6-7).

A claim is judged by the rules of its dispense date: eligibility, the card, each drug's
coverage and ratio, duplicates, the prescription, the quote, and the amounts. The member's
state (domain/state.py) is immutable; functions return a new one."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from services.kernel.drugs import Drug
from services.insurance.domain.coverage import LineInput, LineTotals, split, yearly_threshold
from services.insurance.domain.model import Member, Rules
from services.insurance.domain.state import ClaimMark, MemberState

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


@dataclass(frozen=True)
class Decision(LineTotals):
    claim_id: str
    outcome: str
    reason: str
    lines: tuple[LineDecision, ...]
    benefit_percent: int = 0
    copay_exempt: bool = False


def _rejected_all(claim: Claim, reason: str) -> Decision:
    return Decision(claim.claim_id, CLAIM_REJECTED, reason, tuple(
        LineDecision(l.line_number, l.drug_code, REJECTED, reason, l.quantity, l.unit_price_vnd,
                     patient_vnd=l.quantity * l.unit_price_vnd) for l in claim.lines))


def _card_problem(claim: Claim, member: Member | None) -> str:
    if member is None:
        return "UNKNOWN_MEMBER"
    card = member.card_on(claim.dispensed_on)
    if card is None:
        return "CARD_NOT_YET_VALID" if all(c.valid_from > claim.dispensed_on for c in member.cards) else "CARD_EXPIRED"
    if card.card_code != claim.card_code:
        return "CARD_MISMATCH"
    return ""


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


def adjudicate(claim: Claim, member: Member | None, rules: Rules, state: MemberState, *,
               prescribed: dict[int, PrescribedLine] | None,
               quoted: dict[int, QuotedLine] | None) -> tuple[Decision | None, MemberState]:
    """None when this very claim (its id) was adjudicated before: a resubmission changes nothing."""
    if claim.claim_id in state.claims:
        return None, state
    if claim.dispense_id in state.dispenses:
        return _rejected_all(claim, "DUPLICATE_CLAIM"), state  # another claim for a dispense already claimed
    problem = _card_problem(claim, member)
    if problem:
        decision = _rejected_all(claim, problem)
        return decision, _record(state, claim, decision)

    seen: set[int] = set()
    verdicts: dict[int, str] = {}
    for index, line in enumerate(claim.lines):
        verdicts[index] = _line_problem(line, rules.drugs, prescribed, quoted, seen)
        seen.add(line.line_number)
    eligible = [(i, l) for i, l in enumerate(claim.lines) if not verdicts[i]]
    amounts = {}
    if eligible:
        computed = split([(LineInput(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd), rules.drugs[l.drug_code])
                          for _, l in eligible], member, rules, claim.dispensed_on,
                         yearly_exempt=state.exempt_on(claim.dispensed_on))
        amounts = {i: a for (i, _), a in zip(eligible, computed.lines)}
        benefit, exempt = computed.benefit_percent, computed.exempt
    else:
        benefit, exempt = 0, False

    decided = []
    for index, line in enumerate(claim.lines):
        price = line.quantity * line.unit_price_vnd
        if verdicts[index]:
            decided.append(LineDecision(line.line_number, line.drug_code, REJECTED, verdicts[index], line.quantity,
                                        line.unit_price_vnd, patient_vnd=price))
            continue
        a = amounts[index]
        if a.insured_vnd == 0:
            decided.append(LineDecision(line.line_number, line.drug_code, REJECTED, a.reason_code, line.quantity,
                                        line.unit_price_vnd, a.payment_ratio, patient_vnd=price))
            continue
        fund = min(line.fund_vnd, a.fund_vnd)
        outcome, reason = (REDUCED, "FUND_REDUCED") if line.fund_vnd > a.fund_vnd else (APPROVED, a.reason_code)
        decided.append(LineDecision(line.line_number, line.drug_code, outcome, reason, line.quantity,
                                    line.unit_price_vnd, a.payment_ratio, a.insured_vnd, fund,
                                    a.insured_vnd - fund, price - fund))
    outcomes = {d.outcome for d in decided}
    overall = CLAIM_APPROVED if outcomes == {APPROVED} else CLAIM_REJECTED if outcomes == {REJECTED} else CLAIM_PARTIAL
    decision = Decision(claim.claim_id, overall, "" if overall != CLAIM_REJECTED else decided[0].reason,
                        tuple(decided), benefit, exempt)
    return decision, _accumulate(_record(state, claim, decision), claim, decision, member, rules)


def _record(state: MemberState, claim: Claim, decision: Decision) -> MemberState:
    return state.with_claim(claim.claim_id, ClaimMark(claim.dispensed_on, decision.copay_total, decision.outcome),
                            claim.dispense_id)


def _accumulate(state: MemberState, claim: Claim, decision: Decision, member: Member, rules: Rules) -> MemberState:
    day = claim.dispensed_on
    year = state.year(day.year)
    year = replace(year, copay=year.copay + decision.copay_total)
    if (year.exempt_from is None and member.five_consecutive_years_on(day)
            and year.copay > yearly_threshold(rules, day)):
        # From the next claim on: this one already had its co-payment.
        year = replace(year, exempt_from=day, exempt_claim=claim.claim_id)
    return state.with_year(day.year, year)


def reverse(claim_id: str, state: MemberState, rules: Rules) -> tuple[ClaimMark | None, MemberState]:
    """Undoes a claim's effect on the accumulator. Returns the claim's mark (None when the
    claim is unknown) and the new state; reversing twice changes nothing the second time."""
    mark = state.claims.get(claim_id)
    if mark is None:
        return None, state
    if mark.status != CLAIM_REVERSED:
        year = state.year(mark.year)
        year = replace(year, copay=year.copay - mark.copay)
        if year.exempt_from is not None and year.copay <= yearly_threshold(rules, mark.day):
            year = replace(year, exempt_from=None, exempt_claim=None)
        mark = replace(mark, status=CLAIM_REVERSED)
        state = state.with_year(mark.year, year).with_claim(claim_id, mark)
    return mark, state


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


def adjudication_of(claim: Claim, decision: Decision, now: datetime) -> Adjudication:
    return Adjudication(claim.claim_id, claim.member_id, decision.outcome, now, claim.dispense_id, claim.card_code,
                        decision.reason, decision.fund_total, decision.patient_total, decision.benefit_percent,
                        claim.pharmacy_code, claim.prescription_code, decision.copay_exempt, claim.dispensed_on,
                        decision.lines)


def reversal_of(previous: Adjudication | None, claim_id: str, member_id: str, reason: str,
                now: datetime) -> Adjudication:
    """The claim's last outcome, marked reversed (a reversal replaces the adjudication)."""
    base = previous or Adjudication(claim_id, member_id, CLAIM_REVERSED, now)
    return replace(base, claim_id=claim_id, member_id=member_id, outcome=CLAIM_REVERSED, reason=reason or "REVERSED",
                   adjudicated_at=now)
