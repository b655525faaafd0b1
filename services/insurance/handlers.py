"""The insurance service's commands, queries and event handlers. Domain rules decide;
these functions fetch what the rules need and shape the answers."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable

import structlog
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2
from eprescription.insurance.v1 import insurance_pb2

from services.common import dates, signatures
from services.common.events import new_envelope, payload_of, to_record
from services.common.topics import ALERTS, CLAIMS_ADJUDICATED
from services.insurance.adapters.redis_store import InsuranceStore
from services.insurance.domain import adjudication, alerts, coverage, identifiers
from services.insurance.domain.adjudication import Claim, ClaimLine, PrescribedLine, QuotedLine
from services.insurance.domain.model import InvalidIdentifier, Member, NotEligible, Rules, UnknownDrug, UnknownMember

log = structlog.get_logger("insurance")
PRODUCER = "insurance"
NAMESPACE = uuid.UUID("6f1c8f4e-7f0b-4b7e-9f39-3c2d6c7c9a10")  # output event ids derive from input ids

_OUTCOMES = {
    adjudication.CLAIM_APPROVED: events_pb2.CLAIM_OUTCOME_APPROVED,
    adjudication.CLAIM_PARTIAL: events_pb2.CLAIM_OUTCOME_PARTIAL,
    adjudication.CLAIM_REJECTED: events_pb2.CLAIM_OUTCOME_REJECTED,
    adjudication.CLAIM_REVERSED: events_pb2.CLAIM_OUTCOME_REVERSED,
}
_LINE_OUTCOMES = {adjudication.APPROVED: events_pb2.LINE_OUTCOME_APPROVED,
                  adjudication.REDUCED: events_pb2.LINE_OUTCOME_REDUCED,
                  adjudication.REJECTED: events_pb2.LINE_OUTCOME_REJECTED}


@dataclass(frozen=True)
class Dependencies:
    store: InsuranceStore
    rules: Rules
    clock: Callable[[], datetime]
    public_keys: dict = field(default_factory=dict)  # prescribers' keys, to verify attached prescriptions


def derived_event_id(source_event_id: str, purpose: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{purpose}:{source_event_id}"))


class Insurance:
    def __init__(self, deps: Dependencies):
        self.deps = deps

    # Queries at the counter

    async def _member(self, text: str, field: str = "card_identifier") -> Member:
        parsed = identifiers.parse(text)
        if parsed is None:
            raise InvalidIdentifier(field, "a 15-character card code, a 10-digit social security number "
                                           "or a 12-digit citizen ID")
        member = await self.deps.store.resolve(parsed)
        if member is None:
            raise UnknownMember(f"no member with this {parsed.kind}")
        return member

    def _day(self, value: common_pb2.Date, present: bool) -> date:
        if not present:
            return dates.local_day(self.deps.clock())
        day = dates.from_proto(value)
        if day is None:
            raise InvalidIdentifier("date", "not a calendar date")
        return day

    async def eligibility(self, request: insurance_pb2.CheckEligibilityRequest) -> insurance_pb2.CheckEligibilityResponse:
        day = self._day(request.date, request.HasField("date"))
        member = await self._member(request.card_identifier)
        card = member.card_on(day)
        reply = insurance_pb2.CheckEligibilityResponse(member_id=member.member_id)
        if card is None:
            nearest = member.nearest_card(day)
            reply.eligible = False
            reply.reason = ("CARD_NOT_YET_VALID" if nearest and nearest.valid_from > day else "CARD_EXPIRED")
            if nearest:
                reply.card_code = nearest.card_code
                reply.valid_from.CopyFrom(dates.to_proto(nearest.valid_from))
                reply.valid_to.CopyFrom(dates.to_proto(nearest.valid_to))
                reply.registered_facility = nearest.registered_facility
            return reply
        level = self.deps.rules.benefit_on(card.benefit_digit, day)
        year = await self.deps.store.year(member.member_id, day.year)
        yearly = bool(year and year.get("exempt_from") and date.fromisoformat(year["exempt_from"]) <= day)
        certificate = member.copay_exempt_from is not None and member.copay_exempt_from <= day
        reply.eligible, reply.reason = True, "ELIGIBLE"
        reply.card_code, reply.benefit_percent = card.card_code, level.percent
        reply.valid_from.CopyFrom(dates.to_proto(card.valid_from))
        reply.valid_to.CopyFrom(dates.to_proto(card.valid_to))
        reply.registered_facility = card.registered_facility
        reply.copay_exempt = certificate or yearly
        return reply

    async def quote(self, request: insurance_pb2.QuoteCoverageRequest) -> insurance_pb2.QuoteCoverageResponse:
        day = self._day(request.date, request.HasField("date"))
        member = await self._member(request.card_identifier)
        if not request.lines:
            raise UnknownDrug("lines", "a quote needs at least one line")
        inputs = []
        for i, line in enumerate(request.lines):
            drug = self.deps.rules.drugs.get(line.drug_code)
            if drug is None:
                raise UnknownDrug(f"lines[{i}].drug_code", f"{line.drug_code!r} is not in the formulary")
            if line.quantity <= 0:
                raise UnknownDrug(f"lines[{i}].quantity", "quantity must be at least 1")
            if line.unit_price_vnd < 0:
                raise UnknownDrug(f"lines[{i}].unit_price_vnd", "a price is not negative")
            inputs.append((coverage.LineInput(line.line_number or i + 1, drug.code, line.quantity,
                                              line.unit_price_vnd), drug))
        if len({li.line_number for li, _ in inputs}) != len(inputs):
            raise UnknownDrug("lines", "line numbers must be unique")
        card = member.card_on(day)
        if card is None:
            raise NotEligible("CARD_NOT_VALID_ON_DATE", f"the member has no card valid on {day.isoformat()}")
        year = await self.deps.store.year(member.member_id, day.year) or {}
        yearly = bool(year.get("exempt_from") and date.fromisoformat(year["exempt_from"]) <= day)
        result = coverage.split(inputs, member, self.deps.rules, day, yearly_exempt=yearly)
        quote_id = str(uuid.uuid4())
        await self.deps.store.save_quote(quote_id, member.member_id, [
            QuotedLine(li.line_number, li.drug_code, li.quantity, li.unit_price_vnd) for li, _ in inputs])
        return insurance_pb2.QuoteCoverageResponse(
            quote_id=quote_id, member_id=member.member_id, card_code=card.card_code,
            insured_total_vnd=result.insured_total, fund_total_vnd=result.fund_total,
            patient_total_vnd=result.patient_total,
            rounding_rule=coverage.ROUNDING_RULE + (f"; exempt from co-payment: {result.exempt_reason}"
                                                    if result.exempt else ""),
            lines=[insurance_pb2.QuotedLine(
                line_number=a.line_number, drug_code=a.drug_code, covered=a.covered, payment_ratio=a.payment_ratio,
                insured_vnd=a.insured_vnd, fund_vnd=a.fund_vnd, patient_vnd=a.patient_vnd, reason_code=a.reason_code)
                for a in result.lines])

    async def claim(self, request: insurance_pb2.GetClaimRequest) -> insurance_pb2.GetClaimResponse:
        if not request.claim_id.strip():
            raise InvalidIdentifier("claim_id", "a claim id is required")
        adjudicated = await self.deps.store.adjudication(request.claim_id.strip())
        if adjudicated is None:
            raise UnknownMember(f"no adjudicated claim {request.claim_id}")
        return insurance_pb2.GetClaimResponse(claim_id=adjudicated.claim_id, outcome=adjudicated.outcome,
                                              adjudication=adjudicated)

    # Claims stream (the Faust adjudicator calls these with the member's table state)

    async def on_claim_event(self, envelope: events_pb2.EventEnvelope, state: dict) -> tuple[list, dict]:
        """Returns the records to publish and the member's new state."""
        kind = envelope.WhichOneof("payload")
        payload = payload_of(envelope)
        now = self.deps.clock()
        if kind == "claim_submitted":
            claim = _claim_of(payload)
            member, prescribed, quoted = await asyncio.gather(
                self.deps.store.member(payload.member_id), self._prescription(payload),
                self.deps.store.quote(payload.quote_id))
            decision, state = adjudication.adjudicate(claim, member, self.deps.rules, state,
                                                      prescribed=prescribed, quoted=quoted)
            if decision is None:
                log.info("claim.resubmitted", claim=payload.claim_id)
                return [], state
            message = self._adjudicated(payload, decision, now)
        elif kind == "claim_reversal_requested":
            record, state = adjudication.reverse(payload.claim_id, state, self.deps.rules)
            if record is None:
                raise ValueError(f"reversal of unknown claim {payload.claim_id}")
            previous = await self.deps.store.adjudication(payload.claim_id)
            message = events_pb2.ClaimAdjudicated()
            if previous is not None:
                message.CopyFrom(previous)
            message.claim_id, message.member_id = payload.claim_id, payload.member_id
            message.outcome, message.reason_code = events_pb2.CLAIM_OUTCOME_REVERSED, payload.reason or "REVERSED"
            message.adjudicated_at.FromDatetime(now)
        else:
            raise ValueError(f"{envelope.event_type} does not belong on the claims topic")
        year = dates.from_proto(message.dispensed_on).year if message.HasField("dispensed_on") else None
        await self.deps.store.save_adjudication(message, year_state=(
            (year, state["years"][str(year)]) if str(year) in state["years"] else None))
        record = to_record(new_envelope(message, key=message.member_id, producer=PRODUCER,
                                        correlation_id=envelope.correlation_id, occurred_at=now,
                                        event_id=derived_event_id(envelope.event_id, "adjudicated")),
                           CLAIMS_ADJUDICATED)
        log.info("claim.adjudicated", claim=message.claim_id, outcome=message.outcome,
                 fund=message.fund_total_vnd, member_id=message.member_id)
        return [record], state

    async def republish(self, envelope: events_pb2.EventEnvelope) -> list:
        """The record first published for this claim event, rebuilt from the read model: a
        redelivered event re-sends it under the same event id (consumers de-duplicate)."""
        adjudicated = await self.deps.store.adjudication(payload_of(envelope).claim_id)
        if adjudicated is None:
            return []
        return [to_record(new_envelope(adjudicated, key=adjudicated.member_id, producer=PRODUCER,
                                       correlation_id=envelope.correlation_id,
                                       occurred_at=adjudicated.adjudicated_at.ToDatetime(tzinfo=timezone.utc),
                                       event_id=derived_event_id(envelope.event_id, "adjudicated")),
                          CLAIMS_ADJUDICATED)]

    async def _prescription(self, claim: events_pb2.ClaimSubmitted) -> dict[int, PrescribedLine] | None:
        """The signed prescription attached to the claim when its signature verifies (the
        pharmacy cannot alter it), else the one seen on rx.prescriptions.v1, if any."""
        attached = claim.prescription
        if (claim.HasField("prescription") and attached.code == claim.prescription_code
                and signatures.verify(attached, self.deps.public_keys)):
            return {line.line_number: PrescribedLine(
                line.line_number, line.drug_code, line.quantity,
                self.deps.rules.drugs[line.drug_code].ingredient_names if line.drug_code in self.deps.rules.drugs else ())
                for line in attached.lines}
        return await self.deps.store.prescription(claim.prescription_code)

    def _adjudicated(self, claim: events_pb2.ClaimSubmitted, decision, now: datetime) -> events_pb2.ClaimAdjudicated:
        message = events_pb2.ClaimAdjudicated(
            claim_id=claim.claim_id, dispense_id=claim.dispense_id, member_id=claim.member_id,
            card_code=claim.card_code, outcome=_OUTCOMES[decision.outcome], reason_code=decision.reason,
            fund_total_vnd=decision.fund_total, patient_total_vnd=decision.patient_total,
            benefit_percent=decision.benefit_percent, pharmacy_code=claim.pharmacy_code,
            prescription_code=claim.prescription_code, copay_exempt=decision.copay_exempt,
            lines=[events_pb2.AdjudicatedLine(
                line_number=d.line_number, drug_code=d.drug_code, outcome=_LINE_OUTCOMES[d.outcome],
                reason_code=d.reason, insured_vnd=d.insured_vnd, fund_vnd=d.fund_vnd, patient_vnd=d.patient_vnd,
                quantity=d.quantity, unit_price_vnd=d.unit_price_vnd, payment_ratio=d.payment_ratio,
                copay_vnd=d.copay_vnd) for d in decision.lines])
        message.dispensed_on.CopyFrom(claim.dispensed_on)
        message.adjudicated_at.FromDatetime(now)
        return message

    # Prescriptions stream: what claims are checked against, and doctor shopping

    async def on_prescription_event(self, envelope: events_pb2.EventEnvelope) -> list:
        if envelope.WhichOneof("payload") != "prescription_issued":
            return []
        rx = payload_of(envelope).prescription
        lines = []
        for line in rx.lines:
            drug = self.deps.rules.drugs.get(line.drug_code)
            lines.append(PrescribedLine(line.line_number, line.drug_code, line.quantity,
                                        drug.ingredient_names if drug else ()))
        await self.deps.store.save_prescription(rx.code, lines)
        if rx.type not in (common_pb2.PRESCRIPTION_TYPE_NARCOTIC, common_pb2.PRESCRIPTION_TYPE_PSYCHOTROPIC):
            return []
        kind = rx.patient.identifier.WhichOneof("kind")
        if kind is None:
            return []
        patient_key = f"{kind}:{getattr(rx.patient.identifier, kind)}"
        new = alerts.ControlledPrescription(rx.code, rx.prescriber.certificate_number,
                                            rx.issued_at.ToDatetime(tzinfo=timezone.utc))
        found = alerts.doctor_shopping(new, await self.deps.store.controlled_history(patient_key, new))
        if found is None:
            return []
        alert = events_pb2.SafetyAlert(
            alert_id=derived_event_id(envelope.event_id, "doctor-shopping"),
            kind=events_pb2.ALERT_KIND_DOCTOR_SHOPPING, patient_key=patient_key,
            prescription_codes=list(found.codes), prescriber_ids=list(found.prescribers),
            detail=f"{len(found.prescribers)} prescribers of narcotic or psychotropic drugs within "
                   f"{alerts.WINDOW.days} days")
        alert.window_start.FromDatetime(found.window_start)
        alert.window_end.FromDatetime(found.window_end)
        log.warning("alert.doctor_shopping", patient_key=patient_key, prescriptions=len(found.codes))
        return [to_record(new_envelope(alert, key=patient_key, producer=PRODUCER,
                                       correlation_id=envelope.correlation_id, occurred_at=self.deps.clock(),
                                       event_id=alert.alert_id), ALERTS)]


def _claim_of(payload: events_pb2.ClaimSubmitted) -> Claim:
    day = dates.from_proto(payload.dispensed_on)
    if day is None:
        raise ValueError(f"claim {payload.claim_id} has no valid dispense date")
    if not payload.claim_id or not payload.member_id:
        raise ValueError("a claim needs a claim id and a member id")
    return Claim(payload.claim_id, payload.dispense_id, payload.member_id, payload.card_code,
                 payload.prescription_code, day,
                 tuple(ClaimLine(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd, l.fund_vnd)
                       for l in payload.lines))
