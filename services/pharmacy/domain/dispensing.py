"""Dispensing rules (Circular 26/2025; GPP as amended by Circular 11/2025): every rule name,
refusal and window of the pharmacy, in the order a sale meets them. Pure: the clock, the
formulary, the insurer's quote and the ledger are arguments.

A sale is planned here against the ledger as read; the store applies the plan atomically and
re-checks the state the plan depends on (another pharmacy may have sold in between), naming
the rule it found broken, which `settle` turns back into the same refusal."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from services.kernel import codes, retention
from services.kernel.calendar import local_day
from services.kernel.drugs import Drug
from services.pharmacy.domain.commands import DispenseMedication, ReverseDispense
from services.pharmacy.domain.errors import InvalidRequest, NotFound, NotPermitted, Refused, RequestConflict
from services.pharmacy.domain.events import (ClaimReversalRequested, ClaimSubmitted, DispenseReversed, Event,
                                             MedicationDispensed, ReimbursementRequested)
from services.pharmacy.domain.model import (Closed, DispenseRecord, DispenseResult, Ledger, PriorDispense, Prescription,
                                            Quote, QuoteLine, Receipt, ReceiptLine)

REVERSAL_WINDOW = retention.REVERSAL_WINDOW   # the kernel's, one rule for every service
MAX_IDEMPOTENCY_KEY = 128
DISPENSE_ID = re.compile(rf"^d-({codes.BODY})-[0-9a-f]{{16}}$")

# Rules that depend on the ledger's state: checked on the ledger as read and again where it
# is written. The store names the rule; the message is the domain's.
STATE_RULES = {
    "PRESCRIPTION_CANCELLED": "the prescription was cancelled",
    "PRESCRIPTION_REPLACED": "the prescription was replaced by a newer one",
    "PRESCRIPTION_AWAITING": "the prescription it replaces is still being settled at the pharmacies; try again shortly",
    "VALIDITY_WINDOW_ENDED": "the dispensing window of the prescription has ended",
    "LINE_UNKNOWN": "the prescription has no such line",
    "OUTSIDE_BATCH_DATES": "today is outside the dates of this narcotic batch",
    "QUANTITY_EXCEEDS_REMAINING": "more than what remains to be dispensed",
}


def _require(field: str, ok: bool, rule: str, message: str) -> None:
    if not ok:
        raise InvalidRequest(field, rule, message)


def valid_code(value: str, field: str = "code") -> str:
    code = codes.normalize(value)
    _require(field, codes.is_valid(code), "CODE_FORMAT", codes.FORMAT)
    return code


def check_dispense_request(command: DispenseMedication) -> None:
    """What the request alone must satisfy, before anything is read."""
    _require("idempotency_key", 0 < len(command.idempotency_key) <= MAX_IDEMPOTENCY_KEY,
             "IDEMPOTENCY_KEY_REQUIRED", f"an idempotency key of 1 to {MAX_IDEMPOTENCY_KEY} characters")
    valid_code(command.code)
    _require("lines", len(command.lines) > 0, "LINES_REQUIRED", "a dispense needs at least one line")
    numbers = [line.line_number for line in command.lines]
    _require("lines", len(set(numbers)) == len(numbers), "LINE_NUMBERS", "each prescription line once")
    for i, line in enumerate(command.lines):
        _require(f"lines[{i}].quantity", line.quantity > 0, "QUANTITY_POSITIVE", "quantity must be at least 1")
        _require(f"lines[{i}].unit_price_vnd", line.unit_price_vnd >= 0, "PRICE", "a price is not negative")


def replay(command: DispenseMedication, prior: PriorDispense) -> DispenseResult:
    """The first answer to this idempotency key, if the request is the same one."""
    if prior.fingerprint != command.fingerprint():
        raise RequestConflict(f"idempotency key {command.idempotency_key!r} was used for another request")
    return DispenseResult(prior.receipt, prior.remaining)


def substitution_problem(prescribed: Drug, given: Drug) -> str:
    """Empty when `given` may replace `prescribed`: same active ingredients, strength and route."""
    if sorted(prescribed.ingredients, key=lambda i: i.name) != sorted(given.ingredients, key=lambda i: i.name):
        return "a substitute must have the same active ingredients and strength"
    if prescribed.route != given.route:
        return f"a substitute must have the same route ({prescribed.route}, not {given.route})"
    return ""


def state_refusal(ledger: Ledger, lines: list[tuple[int, int]], today: date) -> tuple[str, int | None] | None:
    """The first state rule that `lines` (line number, quantity) break on this ledger today."""
    if ledger.recorded_status != "active":
        return f"PRESCRIPTION_{ledger.recorded_status.upper()}", None
    if today > ledger.prescription.valid_until:
        return "VALIDITY_WINDOW_ENDED", None
    for number, quantity in lines:
        line = ledger.prescription.line(number)
        if line is None or number not in ledger.remaining:
            return "LINE_UNKNOWN", number
        if line.batch_start is not None and not (line.batch_start <= today <= line.batch_end):
            return "OUTSIDE_BATCH_DATES", number
        if quantity > ledger.remaining[number]:
            return "QUANTITY_EXCEEDS_REMAINING", number
    return None


def refusal(command: DispenseMedication, rule: str, line: int | None, remaining: int | None,
            successor: str = "") -> Refused:
    """The refusal of a state rule; a replaced code's names its successor (where to sell)."""
    numbers = [sold.line_number for sold in command.lines]
    subject = f"lines[{numbers.index(line)}]" if line in numbers else "code"
    detail = f" (remaining {remaining})" if remaining is not None else ""
    if rule == "PRESCRIPTION_REPLACED" and successor:
        return Refused(rule, f"{STATE_RULES[rule]}: {successor}", subject, {"replaced_by": successor})
    return Refused(rule, STATE_RULES.get(rule, rule) + detail, subject)


def carry_over(closed: Closed, successor: Prescription) -> dict[int, int]:
    """What the successor's lines start with already dispensed (our rule; the law is silent on
    a partly sold prescription): unless it is a new supply, everything dispensed under the
    codes it replaces, drug by drug, counts against its lines of the same drug, in line order."""
    if successor.new_supply:
        return {}
    left: dict[str, int] = {}
    for line in closed.prescription.lines:
        left[line.drug_code] = left.get(line.drug_code, 0) + closed.dispensed.get(line.line_number, 0)
    carried = {}
    for line in successor.lines:
        take = min(line.quantity, left.get(line.drug_code, 0))
        if take:
            carried[line.line_number] = take
            left[line.drug_code] -= take
    return carried


@dataclass(frozen=True)
class DispensePlan:
    """A sale ready to apply: what to take from the ledger, what to answer, what to publish."""
    command: DispenseMedication
    today: date
    receipt: Receipt
    record: DispenseRecord
    events: tuple[Event, ...]

    @property
    def quantities(self) -> list[tuple[int, int]]:
        return [(line.line_number, line.quantity) for line in self.command.lines]


@dataclass(frozen=True)
class Checked:
    """A request that passed every rule that does not need the insurer."""
    command: DispenseMedication
    ledger: Ledger
    now: datetime

    def quote_lines(self) -> list[QuoteLine]:
        return [QuoteLine(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd) for l in self.command.lines]


def check_dispense(command: DispenseMedication, ledger: Ledger | None, *, drugs: dict[str, Drug],
                   signature_valid: bool, now: datetime) -> Checked:
    """Every rule of a sale on the ledger as read, in the order the caller should hear them."""
    if ledger is None:
        raise NotFound(f"no prescription {command.code}")
    if not signature_valid:
        raise Refused("SIGNATURE_INVALID", "the prescriber's signature does not verify")
    for i, sold in enumerate(command.lines):
        prescribed = ledger.prescription.line(sold.line_number)
        _require(f"lines[{i}].line_number", prescribed is not None, "LINE_UNKNOWN", "the prescription has no such line")
        given = drugs.get(sold.drug_code)
        _require(f"lines[{i}].drug_code", given is not None, "DRUG_UNKNOWN",
                 f"{sold.drug_code!r} is not in the formulary")
        if not sold.substitution:
            _require(f"lines[{i}].drug_code", sold.drug_code == prescribed.drug_code, "DRUG_NOT_PRESCRIBED",
                     f"line {sold.line_number} prescribes {prescribed.drug_code}; a different drug is a substitution")
            continue
        if not command.may_substitute:
            raise NotPermitted("SUBSTITUTION_NOT_ALLOWED", "only a pharmacist may substitute a drug")
        original = drugs.get(prescribed.drug_code)
        problem = substitution_problem(original, given) if original else "the prescribed drug is unknown here"
        _require(f"lines[{i}].drug_code", not problem, "SUBSTITUTE_NOT_EQUIVALENT", problem)
    broken = state_refusal(ledger, [(l.line_number, l.quantity) for l in command.lines], local_day(now))
    if broken is not None:
        rule, line = broken
        raise refusal(command, rule, line, ledger.remaining.get(line) if rule == "QUANTITY_EXCEEDS_REMAINING" else None,
                      ledger.successor)
    return Checked(command, ledger, now)


def plan_dispense(checked: Checked, quote: Quote | None, *, dispense_token: str, claim_token: str) -> DispensePlan:
    """The sale, priced: by the insurer's quote for a BHYT card, at the declared price otherwise.
    Who the fund pays is the insurer's answer: the facility (a claim from its dispensary), the
    patient (a retail sale of lines the prescriber marked not available at the facility: a
    reimbursement request, with the sale's invoice), or nobody (a retail sale: cash).
    Tokens make the ids (hex, from the caller's random source)."""
    command, ledger, now = checked.command, checked.ledger, checked.now
    rx = ledger.prescription
    dispense_id = f"d-{command.code}-{dispense_token[:16]}"
    claim_id = reimbursement_id = ""
    if quote is not None and quote.payee != "facility":
        if quote.payee == "patient" and not command.invoice_number:
            raise InvalidRequest("invoice_number", "INVOICE_REQUIRED",
                                 "a sale reimbursable to the patient needs its e-invoice number")
        reimbursement_id = f"r-{claim_token}" if quote.payee == "patient" else ""
        receipt_lines = tuple(ReceiptLine(l.line_number, l.quantity, 0, 0, l.quantity * l.unit_price_vnd,
                                          quote.lines[l.line_number].reimbursable_vnd if l.line_number in quote.lines
                                          else 0) for l in command.lines)
        today = local_day(now)
        receipt = Receipt(dispense_id, "", receipt_lines, reimbursement_id)
        events: list[Event] = [MedicationDispensed(dispense_id, rx, command.pharmacy, reimbursement_id, command.lines,
                                                   now, command.invoice_number, payer_bhyt=False,
                                                   idempotency_key=command.idempotency_key,
                                                   fingerprint=command.fingerprint(), receipt=receipt)]
        if reimbursement_id:
            reimbursable = tuple(l for l, r in zip(command.lines, receipt_lines) if r.reimbursable_vnd)
            events.append(ReimbursementRequested(reimbursement_id, dispense_id, quote, rx, command.pharmacy, today,
                                                 reimbursable, command.invoice_number, now))
        record = DispenseRecord(dispense_id, command.code, command.pharmacy, now, reimbursement_id, quote.member_id,
                                command.lines)
        return DispensePlan(command, today, receipt, record, tuple(events))
    if quote is not None:
        recorded = rx.patient_card
        if recorded and recorded.upper() != quote.card_code:
            # The card the hospital recorded for this patient is another member's card.
            raise Refused("BHYT_CARD_NOT_PATIENTS", "the card presented is not the one on the prescription",
                          "bhyt_card")
        missing = [l.line_number for l in command.lines if l.line_number not in quote.lines]
        if missing:
            raise ValueError(f"the insurer's quote has no line {missing[0]}")
        claim_id = f"c-{claim_token}"
        receipt_lines = tuple(ReceiptLine(l.line_number, l.quantity, quote.lines[l.line_number].insured_vnd,
                                          quote.lines[l.line_number].fund_vnd, quote.lines[l.line_number].patient_vnd)
                              for l in command.lines)
    else:
        receipt_lines = tuple(ReceiptLine(l.line_number, l.quantity, 0, 0, l.quantity * l.unit_price_vnd)
                              for l in command.lines)
    today = local_day(now)
    receipt = Receipt(dispense_id, claim_id, receipt_lines)
    events: list[Event] = [MedicationDispensed(dispense_id, rx, command.pharmacy, claim_id, command.lines, now,
                                               command.invoice_number, idempotency_key=command.idempotency_key,
                                               fingerprint=command.fingerprint(), receipt=receipt)]
    if quote is not None:
        events.append(ClaimSubmitted(claim_id, dispense_id, quote, rx, command.pharmacy, today, command.lines, now))
    record = DispenseRecord(dispense_id, command.code, command.pharmacy, now, claim_id,
                            quote.member_id if quote else "", command.lines)
    return DispensePlan(command, today, receipt, record, tuple(events))


# What the store reports after applying a plan.

@dataclass(frozen=True)
class Applied:
    remaining: dict[int, int]


@dataclass(frozen=True)
class AlreadyApplied:
    """Another request with this idempotency key won the race."""
    prior: PriorDispense


@dataclass(frozen=True)
class StateChanged:
    """The ledger changed since it was read and a state rule now refuses the sale."""
    rule: str
    line: int | None = None
    remaining: int | None = None
    successor: str = ""


@dataclass(frozen=True)
class LedgerMissing:
    pass


DispenseOutcome = Applied | AlreadyApplied | StateChanged | LedgerMissing


def settle(plan: DispensePlan, outcome: DispenseOutcome) -> DispenseResult:
    match outcome:
        case Applied(remaining):
            return DispenseResult(plan.receipt, remaining)
        case AlreadyApplied(prior):
            return replay(plan.command, prior)
        case StateChanged(rule, line, remaining, successor):
            raise refusal(plan.command, rule, line, remaining, successor)
        case LedgerMissing():
            raise NotFound(f"no prescription {plan.command.code}")
    raise TypeError(f"unknown outcome {outcome!r}")


# Reversal

def code_of_dispense(dispense_id: str) -> str:
    match = DISPENSE_ID.match(dispense_id.strip())
    _require("dispense_id", match is not None, "DISPENSE_ID_FORMAT", "not a dispense id of this service")
    return match.group(1)


def check_reversal_request(command: ReverseDispense) -> str:
    """The prescription code the dispense belongs to."""
    code = code_of_dispense(command.dispense_id)
    _require("reason", bool(command.reason.strip()), "REASON_REQUIRED", "say why the sale is reversed")
    return code


@dataclass(frozen=True)
class ReversalPlan:
    record: DispenseRecord
    reversed_at: datetime
    events: tuple[Event, ...]

    @property
    def quantities(self) -> list[tuple[int, int]]:
        return [(line.line_number, line.quantity) for line in self.record.lines]


def plan_reversal(command: ReverseDispense, record: DispenseRecord | None, now: datetime) -> ReversalPlan:
    """A sale undone by the pharmacy that made it, within the window; a second reversal of the
    same sale changes nothing (the store says it was already done)."""
    if record is None:
        raise NotFound(f"no dispense {command.dispense_id.strip()}")
    if record.pharmacy != command.pharmacy:
        raise NotPermitted("NOT_DISPENSING_PHARMACY", "only the pharmacy that dispensed may reverse")
    if record.reversed_at is None and now - record.dispensed_at > REVERSAL_WINDOW:
        hours = int(REVERSAL_WINDOW.total_seconds() // 3600)
        raise Refused("REVERSAL_WINDOW_ENDED", f"a sale can be reversed within {hours} hours", "dispense_id")
    events: list[Event] = [DispenseReversed(record, command.reason, now)]
    if record.claim_id:
        events.append(ClaimReversalRequested(record.claim_id, record.dispense_id, record.member_id, command.reason,
                                             now))
    return ReversalPlan(record, now, tuple(events))


@dataclass(frozen=True)
class Reversed:
    pass


@dataclass(frozen=True)
class AlreadyReversed:
    pass


@dataclass(frozen=True)
class RecordMissing:
    pass


ReverseOutcome = Reversed | AlreadyReversed | RecordMissing
