"""The pharmacy service's commands, query and ledger projection."""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Protocol

import structlog
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.pharmacy.v1 import pharmacy_pb2

from services.common import dates, privacy, signatures
from services.common.auth import Caller, Scope
from services.common.events import new_envelope, payload_of, to_record
from services.common.formulary import Drug
from services.common.topics import CLAIMS, DISPENSES
from services.pharmacy.adapters.redis_store import Ledger, PharmacyStore
from services.pharmacy.domain import rules
from services.pharmacy.domain.rules import (InvalidRequest, NotFound, NotPermitted, Refused, RequestConflict,
                                            REVERSAL_WINDOW_HOURS)

log = structlog.get_logger("pharmacy")
PRODUCER = "pharmacy"
CODE = re.compile(r"^[0-9a-z]{12}-[cnhy]$")
DISPENSE_ID = re.compile(r"^d-([0-9a-z]{12}-[cnhy])-[0-9a-f]{16}$")
MAX_KEY = 128
_STATUS = {"active": common_pb2.PRESCRIPTION_STATUS_ACTIVE,
           "partially_dispensed": common_pb2.PRESCRIPTION_STATUS_PARTIALLY_DISPENSED,
           "completed": common_pb2.PRESCRIPTION_STATUS_COMPLETED,
           "cancelled": common_pb2.PRESCRIPTION_STATUS_CANCELLED,
           "replaced": common_pb2.PRESCRIPTION_STATUS_REPLACED,
           "expired": common_pb2.PRESCRIPTION_STATUS_EXPIRED}
_REFUSALS = {
    "PRESCRIPTION_CANCELLED": "the prescription was cancelled",
    "PRESCRIPTION_REPLACED": "the prescription was replaced by a newer one",
    "VALIDITY_WINDOW_ENDED": "the dispensing window of the prescription has ended",
    "OUTSIDE_BATCH_DATES": "today is outside the dates of this narcotic batch",
    "QUANTITY_EXCEEDS_REMAINING": "more than what remains to be dispensed",
    "LINE_UNKNOWN": "the prescription has no such line",
}


class Insurance(Protocol):
    """Quotes what the fund and the patient pay; raises InsuranceUnavailable when it cannot answer
    in time, Refused when the card is not eligible."""

    async def quote(self, card, day, facility, lines, correlation_id): ...


@dataclass(frozen=True)
class Dependencies:
    store: PharmacyStore
    drugs: dict[str, Drug]
    public_keys: dict
    insurance: Insurance
    clock: Callable[[], datetime]


def _require(field: str, ok: bool, rule: str, message: str) -> None:
    if not ok:
        raise InvalidRequest(field, rule, message)


def _code(value: str, field: str = "code") -> str:
    code = value.strip().lower()
    _require(field, bool(CODE.match(code)), "CODE_FORMAT",
             "a prescription code is 5 facility characters, 7 of [0-9a-z], '-' and c, n, h or y")
    return code


def fingerprint(request) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


class Pharmacy:
    def __init__(self, deps: Dependencies):
        self.deps = deps

    # Query

    async def lookup(self, request: pharmacy_pb2.LookupPrescriptionRequest) -> pharmacy_pb2.LookupPrescriptionResponse:
        code = _code(request.code)
        ledger = await self.deps.store.ledger(code)
        if ledger is None:
            raise NotFound(f"no prescription {code}")
        today = dates.local_day(self.deps.clock())
        verified = signatures.verify(ledger.content, self.deps.public_keys)
        rx, hidden = privacy.masked(ledger.content)
        return pharmacy_pb2.LookupPrescriptionResponse(
            prescription=rx, status=_STATUS[self._status(ledger, today)], signature_verified=verified,
            identity_hidden=hidden, first_dispense_deadline=dates.to_proto(ledger.valid_until),
            lines=[pharmacy_pb2.LedgerLine(line_number=line.line_number, drug_code=line.drug_code,
                                           prescribed=ledger.prescribed[line.line_number],
                                           dispensed=ledger.prescribed[line.line_number] - ledger.remaining[line.line_number],
                                           remaining=ledger.remaining[line.line_number])
                   for line in rx.lines])

    # Commands

    async def dispense(self, request: pharmacy_pb2.DispensePrescriptionRequest, caller: Caller,
                       correlation_id: str) -> pharmacy_pb2.DispensePrescriptionResponse:
        _require("idempotency_key", 0 < len(request.idempotency_key) <= MAX_KEY, "IDEMPOTENCY_KEY_REQUIRED",
                 f"an idempotency key of 1 to {MAX_KEY} characters")
        code = _code(request.code)
        payment = request.WhichOneof("payment")
        _require("payment", payment == "bhyt_card" or (payment == "self_pay" and request.self_pay), "PAYMENT_REQUIRED",
                 "say bhyt_card or self_pay")
        _require("lines", len(request.lines) > 0, "LINES_REQUIRED", "a dispense needs at least one line")
        numbers = [line.line_number for line in request.lines]
        _require("lines", len(set(numbers)) == len(numbers), "LINE_NUMBERS", "each prescription line once")
        for i, line in enumerate(request.lines):
            _require(f"lines[{i}].quantity", line.quantity > 0, "QUANTITY_POSITIVE", "quantity must be at least 1")
            _require(f"lines[{i}].unit_price_vnd", line.unit_price_vnd >= 0, "PRICE", "a price is not negative")

        prior = await self.deps.store.prior(code, caller.identity, request.idempotency_key)
        if prior is not None:
            return self._replayed(prior, request)

        ledger = await self.deps.store.ledger(code)
        if ledger is None:
            raise NotFound(f"no prescription {code}")
        if not signatures.verify(ledger.content, self.deps.public_keys):
            raise Refused("SIGNATURE_INVALID", "the prescriber's signature does not verify")
        prescribed = {line.line_number: line for line in ledger.content.lines}
        for i, line in enumerate(request.lines):
            self._check_drug(i, line, prescribed.get(line.line_number), caller)

        now = self.deps.clock()
        today = dates.local_day(now)
        dispense_id = f"d-{code}-{uuid.uuid4().hex[:16]}"
        amounts, claim_id, quote = {}, "", None
        if payment == "bhyt_card":
            quote = await self.deps.insurance.quote(
                request.bhyt_card, today, ledger.content.facility_code,
                [(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd) for l in request.lines], correlation_id)
            recorded = ledger.content.patient.bhyt_card
            if recorded and recorded.upper() != quote.card_code:
                # The card the hospital recorded for this patient is another member's card.
                raise Refused("BHYT_CARD_NOT_PATIENTS", "the card presented is not the one on the prescription",
                              "bhyt_card")
            amounts = {q.line_number: (q.insured_vnd, q.fund_vnd, q.patient_vnd, q.payment_ratio) for q in quote.lines}
            claim_id = f"c-{uuid.uuid4()}"
        template = {
            "dispense_id": dispense_id, "claim_id": claim_id,
            "lines": [{"line": l.line_number, "qty": l.quantity,
                       "insured": amounts.get(l.line_number, (0,))[0],
                       "fund": amounts.get(l.line_number, (0, 0))[1],
                       "patient": amounts.get(l.line_number, (0, 0, l.quantity * l.unit_price_vnd))[2]}
                      for l in request.lines]}
        record = {"dispense_id": dispense_id, "code": code, "pharmacy": caller.identity,
                  "dispensed_at": now.isoformat(), "claim_id": claim_id,
                  "member_id": quote.member_id if quote else "",
                  "lines": [[l.line_number, l.drug_code, l.quantity, l.unit_price_vnd, l.substitution]
                            for l in request.lines]}
        records = self._dispense_events(request, ledger, caller, dispense_id, claim_id, quote, amounts, now,
                                        correlation_id)
        outcome = await self.deps.store.dispense(
            code=code, pharmacy=caller.identity, key=request.idempotency_key, fingerprint=fingerprint(request),
            template=json.dumps(template), today=today, dispense_id=dispense_id, record=json.dumps(record),
            lines=[(l.line_number, l.quantity) for l in request.lines], records=records)
        result = outcome[0]
        if result == "refused":
            rule = outcome[1]
            subject = f"lines[{numbers.index(int(outcome[2]))}]" if len(outcome) > 2 else "code"
            detail = f" (remaining {outcome[3]})" if len(outcome) > 3 else ""
            raise Refused(rule, _REFUSALS.get(rule, rule) + detail, subject)
        if result == "not_found":
            raise NotFound(f"no prescription {code}")
        if result == "duplicate":
            return self._replayed(tuple(outcome[1:4]), request)
        log.info("dispense.accepted", code=code, dispense=dispense_id, pharmacy=caller.identity,
                 lines=len(request.lines), payer=payment)
        return self._response(template, outcome[3])

    async def reverse(self, request: pharmacy_pb2.ReverseDispenseRequest, caller: Caller,
                      correlation_id: str) -> pharmacy_pb2.ReverseDispenseResponse:
        match = DISPENSE_ID.match(request.dispense_id.strip())
        _require("dispense_id", match is not None, "DISPENSE_ID_FORMAT", "not a dispense id of this service")
        _require("reason", bool(request.reason.strip()), "REASON_REQUIRED", "say why the sale is reversed")
        code, dispense_id = match.group(1), request.dispense_id.strip()
        record = await self.deps.store.dispense_record(code, dispense_id)
        if record is None:
            raise NotFound(f"no dispense {dispense_id}")
        if record["pharmacy"] != caller.identity:
            raise NotPermitted("NOT_DISPENSING_PHARMACY", "only the pharmacy that dispensed may reverse")
        now = self.deps.clock()
        if "reversed_at" not in record and now - datetime.fromisoformat(record["dispensed_at"]) > timedelta(
                hours=REVERSAL_WINDOW_HOURS):
            raise Refused("REVERSAL_WINDOW_ENDED", f"a sale can be reversed within {REVERSAL_WINDOW_HOURS} hours",
                          "dispense_id")
        lines = [(n, qty) for n, _, qty, _, _ in record["lines"]]
        reversed_ = events_pb2.DispenseReversed(
            dispense_id=dispense_id, prescription_code=code, pharmacy_code=caller.identity, reason=request.reason,
            lines=[events_pb2.DispensedLine(line_number=n, drug_code=d, quantity=q, unit_price_vnd=p, substitution=s)
                   for n, d, q, p, s in record["lines"]])
        records = [to_record(new_envelope(reversed_, key=code, producer=PRODUCER, correlation_id=correlation_id,
                                          occurred_at=now), DISPENSES)]
        if record["claim_id"]:
            reversal = events_pb2.ClaimReversalRequested(claim_id=record["claim_id"], dispense_id=dispense_id,
                                                         member_id=record["member_id"], reason=request.reason)
            records.append(to_record(new_envelope(reversal, key=record["member_id"], producer=PRODUCER,
                                                  correlation_id=correlation_id, occurred_at=now), CLAIMS))
        outcome = await self.deps.store.reverse(code=code, dispense_id=dispense_id, reversed_at=now.isoformat(),
                                                lines=lines, records=records)
        if outcome[0] == "not_found":
            raise NotFound(f"no dispense {dispense_id}")
        if outcome[0] == "done":
            log.info("dispense.reversed", code=code, dispense=dispense_id)
        ledger = await self.deps.store.ledger(code)
        return pharmacy_pb2.ReverseDispenseResponse(dispense_id=dispense_id, lines=[
            pharmacy_pb2.LedgerLine(line_number=n, prescribed=ledger.prescribed[n],
                                    dispensed=ledger.prescribed[n] - ledger.remaining[n], remaining=ledger.remaining[n])
            for n in sorted(ledger.prescribed)])

    # Ledger projection from rx.prescriptions.v1

    async def on_prescription_event(self, envelope: events_pb2.EventEnvelope) -> None:
        kind = envelope.WhichOneof("payload")
        payload = payload_of(envelope)
        if kind == "prescription_issued":
            rx = payload.prescription
            valid_until = dates.from_proto(rx.valid_until)
            if valid_until is None:
                raise ValueError(f"prescription {rx.code} has no valid_until")
            batch_dates = {b.number: (dates.from_proto(b.start), dates.from_proto(b.end)) for b in rx.batches}
            per_line = {line.line_number: batch_dates[line.batch_number]
                        for line in rx.lines if line.batch_number in batch_dates}
            await self.deps.store.open_ledger(rx, valid_until, per_line)
        elif kind == "prescription_replaced":
            await self.deps.store.close_ledger(payload.replaced_code, "replaced")
        elif kind == "prescription_cancelled":
            await self.deps.store.close_ledger(payload.code, "cancelled")

    # Helpers

    def _check_drug(self, i: int, line, prescribed: common_pb2.PrescriptionLine | None, caller: Caller) -> None:
        _require(f"lines[{i}].line_number", prescribed is not None, "LINE_UNKNOWN", "the prescription has no such line")
        given = self.deps.drugs.get(line.drug_code)
        _require(f"lines[{i}].drug_code", given is not None, "DRUG_UNKNOWN", f"{line.drug_code!r} is not in the formulary")
        if not line.substitution:
            _require(f"lines[{i}].drug_code", line.drug_code == prescribed.drug_code, "DRUG_NOT_PRESCRIBED",
                     f"line {line.line_number} prescribes {prescribed.drug_code}; a different drug is a substitution")
            return
        if not caller.may(Scope.SUBSTITUTE):
            raise NotPermitted("SUBSTITUTION_NOT_ALLOWED", "only a pharmacist may substitute a drug")
        original = self.deps.drugs.get(prescribed.drug_code)
        problem = rules.substitution_problem(original, given) if original else "the prescribed drug is unknown here"
        _require(f"lines[{i}].drug_code", not problem, "SUBSTITUTE_NOT_EQUIVALENT", problem)

    def _dispense_events(self, request, ledger: Ledger, caller: Caller, dispense_id: str, claim_id: str, quote,
                         amounts: dict, now: datetime, correlation_id: str) -> list:
        rx = ledger.content
        dispensed = events_pb2.MedicationDispensed(
            dispense_id=dispense_id, prescription_code=rx.code, pharmacy_code=caller.identity,
            payer=events_pb2.PAYER_BHYT if claim_id else events_pb2.PAYER_SELF, claim_id=claim_id,
            patient=rx.patient.identifier,
            lines=[events_pb2.DispensedLine(line_number=l.line_number, drug_code=l.drug_code, quantity=l.quantity,
                                            unit_price_vnd=l.unit_price_vnd, substitution=l.substitution,
                                            substituted_by=caller.identity if l.substitution else "")
                   for l in request.lines])
        records = [to_record(new_envelope(dispensed, key=rx.code, producer=PRODUCER, correlation_id=correlation_id,
                                          occurred_at=now), DISPENSES)]
        if claim_id:
            claim = events_pb2.ClaimSubmitted(
                claim_id=claim_id, dispense_id=dispense_id, quote_id=quote.quote_id, member_id=quote.member_id,
                card_code=quote.card_code, facility_code=rx.facility_code, pharmacy_code=caller.identity,
                prescription_code=rx.code, dispensed_on=dates.to_proto(dates.local_day(now)), prescription=rx,
                lines=[events_pb2.ClaimLine(line_number=l.line_number, drug_code=l.drug_code, quantity=l.quantity,
                                            unit_price_vnd=l.unit_price_vnd, payment_ratio=amounts[l.line_number][3],
                                            insured_vnd=amounts[l.line_number][0], fund_vnd=amounts[l.line_number][1],
                                            patient_vnd=amounts[l.line_number][2])
                       for l in request.lines])
            records.append(to_record(new_envelope(claim, key=quote.member_id, producer=PRODUCER,
                                                  correlation_id=correlation_id, occurred_at=now), CLAIMS))
        return records

    def _replayed(self, prior: tuple[str, str, str], request) -> pharmacy_pb2.DispensePrescriptionResponse:
        fp, template, remaining = prior
        if fp != fingerprint(request):
            raise RequestConflict(f"idempotency key {request.idempotency_key!r} was used for another request")
        return self._response(json.loads(template), remaining)

    @staticmethod
    def _response(template, remaining_json: str) -> pharmacy_pb2.DispensePrescriptionResponse:
        template = template if isinstance(template, dict) else json.loads(template)
        remaining = {int(k): v for k, v in json.loads(remaining_json).items()}
        status = "completed" if all(v == 0 for v in remaining.values()) else "partially_dispensed"
        return pharmacy_pb2.DispensePrescriptionResponse(
            dispense_id=template["dispense_id"], claim_id=template["claim_id"], status=_STATUS[status],
            fund_total_vnd=sum(l["fund"] for l in template["lines"]),
            patient_total_vnd=sum(l["patient"] for l in template["lines"]),
            lines=[pharmacy_pb2.DispensedLineResult(line_number=l["line"], quantity=l["qty"],
                                                    remaining=remaining[l["line"]], insured_vnd=l["insured"],
                                                    fund_vnd=l["fund"], patient_vnd=l["patient"])
                   for l in template["lines"]])

    def _status(self, ledger: Ledger, today) -> str:
        return rules.status(ledger.status, ledger.prescribed, ledger.remaining, ledger.valid_until, today)


