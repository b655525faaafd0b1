"""Claim adjudication and the per-member yearly co-payment accumulator (DOMAIN.md 6-7).

A claim is judged by the rules of its dispense date: eligibility, the card, each drug's
coverage and ratio, duplicates, the prescription, the quote, and the amounts. The member's
state is a plain JSON-able dict (the Faust table stores it); functions return a new one."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date

from services.kernel.drugs import Drug
from services.insurance.domain.coverage import LineInput, LineTotals, split, yearly_threshold
from services.insurance.domain.model import Member, Rules

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


def empty_state() -> dict:
    return {"years": {}, "claims": {}, "dispenses": {}}


def year_state(state: dict, year: int) -> dict:
    return state["years"].get(str(year), {"copay": 0, "exempt_from": None, "exempt_claim": None})


def exempt_on(state: dict, day: date) -> bool:
    exempt_from = year_state(state, day.year)["exempt_from"]
    return exempt_from is not None and date.fromisoformat(exempt_from) <= day


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


def adjudicate(claim: Claim, member: Member | None, rules: Rules, state: dict, *,
               prescribed: dict[int, PrescribedLine] | None,
               quoted: dict[int, QuotedLine] | None) -> tuple[Decision | None, dict]:
    """None when this very claim (its id) was adjudicated before: a resubmission changes nothing."""
    state = copy.deepcopy(state)
    if claim.claim_id in state["claims"]:
        return None, state
    if claim.dispense_id in state["dispenses"]:
        return _rejected_all(claim, "DUPLICATE_CLAIM"), state  # another claim for a dispense already claimed
    problem = _card_problem(claim, member)
    if problem:
        decision = _rejected_all(claim, problem)
        _record(state, claim, decision)
        return decision, state

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
                         yearly_exempt=exempt_on(state, claim.dispensed_on))
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
    _record(state, claim, decision)
    _accumulate(state, claim, decision, member, rules)
    return decision, state


def _record(state: dict, claim: Claim, decision: Decision) -> None:
    state["dispenses"][claim.dispense_id] = claim.claim_id
    state["claims"][claim.claim_id] = {"year": claim.dispensed_on.year, "day": claim.dispensed_on.isoformat(),
                                       "copay": decision.copay_total, "status": decision.outcome}


def _accumulate(state: dict, claim: Claim, decision: Decision, member: Member, rules: Rules) -> None:
    day = claim.dispensed_on
    year = dict(year_state(state, day.year))
    year["copay"] += decision.copay_total
    if (year["exempt_from"] is None and member.five_consecutive_years_on(day)
            and year["copay"] > yearly_threshold(rules, day)):
        # From the next claim on: this one already had its co-payment.
        year["exempt_from"], year["exempt_claim"] = day.isoformat(), claim.claim_id
    state["years"][str(day.year)] = year


def reverse(claim_id: str, state: dict, rules: Rules) -> tuple[dict | None, dict]:
    """Undoes a claim's effect on the accumulator. Returns the claim's record (None when the
    claim is unknown) and the new state; reversing twice changes nothing the second time."""
    state = copy.deepcopy(state)
    record = state["claims"].get(claim_id)
    if record is None:
        return None, state
    if record["status"] != CLAIM_REVERSED:
        day = date.fromisoformat(record["day"])
        year = dict(year_state(state, day.year))
        year["copay"] -= record["copay"]
        if year["exempt_from"] is not None and year["copay"] <= yearly_threshold(rules, day):
            year["exempt_from"], year["exempt_claim"] = None, None
        state["years"][str(day.year)] = year
        record = dict(record, status=CLAIM_REVERSED)
        state["claims"][claim_id] = record
    return record, state
