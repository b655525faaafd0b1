"""The insurance service's commands, queries and event handlers. Domain rules decide;
these functions fetch what the rules need and hand back domain results and events."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable

import structlog

from services.insurance.domain import adjudication, alerts, coverage, identifiers, payees, prescriptions
from services.insurance.domain.adjudication import Adjudication, Adjustment, QuotedLine
from services.insurance.domain.commands import CheckEligibility, GetClaim, QuoteCoverage
from services.insurance.domain.events import (AttachedPrescription, ClaimAdjudicated, ClaimReversalRequested,
                                              ClaimSubmitted, DoctorShoppingAlert, PrescriptionIssued,
                                              derived_event_id)
from services.insurance.domain.model import (Eligibility, InvalidIdentifier, Member, NotEligible, Rules,
                                             UnknownDrug, UnknownMember)
from services.insurance.domain.prescriptions import PrescriptionFacts
from services.insurance.domain.state import MemberState
from services.insurance.ports import InsuranceStore, SignatureCheck
from services.kernel.calendar import local_day

log = structlog.get_logger("insurance")


@dataclass(frozen=True)
class Dependencies:
    store: InsuranceStore
    rules: Rules
    clock: Callable[[], datetime]
    signatures: SignatureCheck | None = None   # prescribers' keys, to verify attached prescriptions


@dataclass(frozen=True)
class CoverageQuote:
    quote_id: str
    member_id: str
    card_code: str
    split: coverage.Split

    @property
    def rounding_rule(self) -> str:
        exempt = f"; exempt from co-payment: {self.split.exempt_reason}" if self.split.exempt else ""
        return coverage.ROUNDING_RULE + exempt


def _exempt(year, day: date) -> bool:
    """Exempt from co-payment on `day` by the member's year so far (None: nothing this year)."""
    return bool(year and year.exempt_on(day))


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

    def _day(self, day: date | None) -> date:
        return day or local_day(self.deps.clock())

    async def _yearly_exempt(self, member: Member, day: date) -> bool:
        return _exempt(await self.deps.store.year(member.member_id, day.year), day)

    async def eligibility(self, query: CheckEligibility) -> Eligibility:
        day = self._day(query.day)
        member = await self._member(query.card_identifier)
        card = member.card_on(day)
        if card is None:
            nearest = member.nearest_card(day)
            reason = "CARD_NOT_YET_VALID" if nearest and nearest.valid_from > day else "CARD_EXPIRED"
            return Eligibility(member.member_id, False, reason, nearest)
        level = self.deps.rules.benefit_on(card.benefit_digit, day)
        certificate = member.copay_exempt_from is not None and member.copay_exempt_from <= day
        return Eligibility(member.member_id, True, "ELIGIBLE", card, level.percent,
                           certificate or await self._yearly_exempt(member, day))

    async def quote(self, command: QuoteCoverage) -> CoverageQuote:
        day = self._day(command.day)
        member = await self._member(command.card_identifier)
        if not command.lines:
            raise UnknownDrug("lines", "a quote needs at least one line")
        inputs = []
        for i, line in enumerate(command.lines):
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
        facility, earlier, other_costs, visit_day, facts = command.facility_code, (), 0, None, None
        if command.prescription is not None:
            facts = self._trusted(command.prescription)
            if facts is None:
                raise NotEligible("SIGNATURE_INVALID", "the prescription's signature does not verify", "prescription")
            problem = prescriptions.patient_problem(member, facts.patient)
            if problem:
                raise NotEligible(prescriptions.CARD_NOT_PATIENTS, problem)
            facility, other_costs, visit_day = facts.facility_code, facts.visit.other_costs_vnd, facts.visit.day or day
        retail = bool(command.pharmacy_code) and not payees.claims_for_facility(
            self.deps.rules.pharmacy(command.pharmacy_code), facility)
        year, visit = await self.deps.store.year_and_visit(member.member_id, day.year, facts.visit.key
                                                           if facts is not None and not retail else None)
        if visit is not None:
            visit = visit.with_costs(facts.visit.other_costs_vnd, facts.visit.stated_at.isoformat())
            earlier, other_costs, visit_day = visit.sales, visit.other_costs_vnd, visit.day
        result = coverage.split(inputs, member, self.deps.rules, day, facility=facility,
                                yearly_exempt=_exempt(year, day), earlier=earlier,
                                other_costs_vnd=other_costs, visit_day=visit_day, small_visit_exemption=not retail)
        if retail:
            result = coverage.at_retail(result, facts.not_available if facts is not None else frozenset())
        quote_id = str(uuid.uuid4())
        await self.deps.store.save_quote(quote_id, member.member_id, [
            QuotedLine(li.line_number, li.drug_code, li.quantity, li.unit_price_vnd) for li, _ in inputs])
        return CoverageQuote(quote_id, member.member_id, card.card_code, result)

    async def claim(self, query: GetClaim) -> Adjudication:
        if not query.claim_id.strip():
            raise InvalidIdentifier("claim_id", "a claim id is required")
        adjudicated = await self.deps.store.adjudication(query.claim_id.strip())
        if adjudicated is None:
            raise UnknownMember(f"no adjudicated claim {query.claim_id}")
        return adjudicated

    # Claims stream (the adjudicator calls these with the member's state)

    async def on_claim_submitted(self, event: ClaimSubmitted,
                                 state: MemberState) -> tuple[list[ClaimAdjudicated], MemberState]:
        """The outcomes to publish (the claim's, then any earlier claim of its visit it
        repriced) and the member's new state."""
        claim = event.claim
        member, facts, quoted = await asyncio.gather(
            self.deps.store.member(claim.member_id), self._prescription(event),
            self.deps.store.quote(event.quote_id))
        if claim.payee == payees.PATIENT:
            decision, state = adjudication.reimburse(claim, member, self.deps.rules, state, facts=facts, quoted=quoted)
            adjustments = []
        else:
            decision, adjustments, state = adjudication.adjudicate(claim, member, self.deps.rules, state,
                                                                   facts=facts, quoted=quoted)
        if decision is None:
            log.info("claim.resubmitted", claim=claim.claim_id)
            return [], state
        now = self.deps.clock()
        outcome = adjudication.adjudication_of(claim, decision, now)
        published = [await self._record(derived_event_id(event.event_id, "adjudicated"), outcome, state)]
        return published + await self._adjust(event.event_id, claim.claim_id, adjustments, state), state

    async def on_claim_reversal(self, event: ClaimReversalRequested,
                                state: MemberState) -> tuple[list[ClaimAdjudicated], MemberState]:
        member = await self.deps.store.member(event.member_id)
        mark, adjustments, state = adjudication.reverse(event.claim_id, state, self.deps.rules, member)
        if mark is None:
            raise ValueError(f"reversal of unknown claim {event.claim_id}")
        previous = await self.deps.store.adjudication(event.claim_id)
        outcome = adjudication.reversal_of(previous, event.claim_id, event.member_id, event.reason, self.deps.clock())
        published = [await self._record(derived_event_id(event.event_id, "adjudicated"), outcome, state)]
        return published + await self._adjust(event.event_id, event.claim_id, adjustments, state), state

    async def _adjust(self, source_event_id: str, by_claim: str, adjustments: list[Adjustment],
                      state: MemberState) -> list[ClaimAdjudicated]:
        """Publishes each earlier claim of the visit again with its new amounts."""
        published = []
        for adjustment in adjustments:
            previous = await self.deps.store.adjudication(adjustment.claim_id)
            if previous is None:
                log.error("claim.adjustment_without_outcome", claim=adjustment.claim_id, by=by_claim)
                continue
            outcome = adjudication.adjusted(previous, adjustment, by_claim, self.deps.clock())
            if previous.adjusted_by == by_claim and previous.lines == outcome.lines:
                outcome = previous   # this claim's event again (a crash before the table kept it): no new revision
            published.append(await self._record(
                derived_event_id(source_event_id, f"adjusted:{adjustment.claim_id}"), outcome, state))
        return published

    async def _record(self, event_id: str, outcome: Adjudication, state: MemberState) -> ClaimAdjudicated:
        year = outcome.dispensed_on.year if outcome.dispensed_on else None
        visit = state.visits.get(outcome.visit_key) if outcome.visit_key else None
        await self.deps.store.save_adjudication(outcome, (year, state.years[year]) if year in state.years else None,
                                                (outcome.visit_key, visit) if visit is not None else None)
        log.info("claim.adjudicated", claim=outcome.claim_id, outcome=outcome.outcome, fund=outcome.fund_total_vnd,
                 member_id=outcome.member_id, revision=outcome.revision)
        return ClaimAdjudicated(event_id, outcome)

    async def republish(self, source_event_id: str, claim_id: str,
                        state: MemberState | None = None) -> list[ClaimAdjudicated]:
        """The outcomes first published for this claim event, from the read model: a redelivered
        event re-sends them under the same event ids (consumers de-duplicate), the claim's and
        those of the claims of its visit it adjusted."""
        adjudicated = await self.deps.store.adjudication(claim_id)
        if adjudicated is None:
            return []
        out = [ClaimAdjudicated(derived_event_id(source_event_id, "adjudicated"), adjudicated)]
        key = state.claim_visits.get(claim_id) if state is not None else None
        visit = state.visits.get(key) if key else None
        for sale in visit.sales if visit is not None else ():
            other = await self.deps.store.adjudication(sale.sale_id) if sale.sale_id != claim_id else None
            if other is not None and other.adjusted_by == claim_id:
                out.append(ClaimAdjudicated(derived_event_id(source_event_id, f"adjusted:{sale.sale_id}"), other))
        return out

    def _trusted(self, attached: AttachedPrescription) -> PrescriptionFacts | None:
        """The prescription's facts when its prescriber's signature verifies, else None."""
        if self.deps.signatures is not None and self.deps.signatures.verify(attached.document):
            return attached.facts
        return None

    async def _prescription(self, event: ClaimSubmitted) -> PrescriptionFacts | None:
        """The signed prescription attached to the claim when its signature verifies (the
        pharmacy cannot alter it), else the one seen on rx.prescriptions.v1, if any."""
        attached = event.attached
        if attached is not None and attached.code == event.claim.prescription_code:
            facts = self._trusted(attached)
            if facts is not None:
                return facts
        return await self.deps.store.prescription(event.claim.prescription_code)

    # Prescriptions stream: what claims are checked against, and doctor shopping

    async def on_prescription_issued(self, event: PrescriptionIssued) -> list[DoctorShoppingAlert]:
        await self.deps.store.save_prescription(event.facts)
        if not event.controlled or not event.patient_key:
            return []
        new = alerts.ControlledPrescription(event.code, event.prescriber, event.issued_at)
        found = alerts.doctor_shopping(new, await self.deps.store.controlled_history(event.patient_key, new))
        if found is None:
            return []
        log.warning("alert.doctor_shopping", patient_key=event.patient_key, prescriptions=len(found.codes))
        return [DoctorShoppingAlert(derived_event_id(event.event_id, "doctor-shopping"), event.patient_key, found,
                                    alerts.WINDOW.days, self.deps.clock())]

