"""The insurer's events on the wire: claim and prescription envelopes to domain events, and
outcomes and alerts to envelopes (with the source event's correlation id)."""
from __future__ import annotations

from datetime import timezone

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common import dates
from services.common.events import KafkaRecord, new_envelope, payload_of, to_record
from services.common.logging import correlation_id
from services.common.topics import ALERTS, CLAIMS_ADJUDICATED
from services.kernel.calendar import local_day
from services.insurance.domain import adjudication, payees
from services.insurance.domain.adjudication import Adjudication, Claim, ClaimLine, LineDecision
from services.insurance.domain.prescriptions import Patient, PrescriptionFacts, Visit, visit_key
from services.insurance.domain.events import (AttachedPrescription, ClaimAdjudicated, ClaimReversalRequested,
                                              ClaimSubmitted, DoctorShoppingAlert, Outgoing, PrescriptionIssued)

PRODUCER = "insurance"
CONTROLLED = (common_pb2.PRESCRIPTION_TYPE_NARCOTIC, common_pb2.PRESCRIPTION_TYPE_PSYCHOTROPIC)
OUTCOMES = {
    adjudication.CLAIM_APPROVED: events_pb2.CLAIM_OUTCOME_APPROVED,
    adjudication.CLAIM_PARTIAL: events_pb2.CLAIM_OUTCOME_PARTIAL,
    adjudication.CLAIM_REJECTED: events_pb2.CLAIM_OUTCOME_REJECTED,
    adjudication.CLAIM_REVERSED: events_pb2.CLAIM_OUTCOME_REVERSED,
}
PAYEES = {payees.FACILITY: events_pb2.PAYEE_FACILITY, payees.PATIENT: events_pb2.PAYEE_PATIENT,
          payees.NONE: events_pb2.PAYEE_NONE}
LINE_OUTCOMES = {adjudication.APPROVED: events_pb2.LINE_OUTCOME_APPROVED,
                 adjudication.REDUCED: events_pb2.LINE_OUTCOME_REDUCED,
                 adjudication.REJECTED: events_pb2.LINE_OUTCOME_REJECTED}


def facts_of(rx: common_pb2.Prescription) -> PrescriptionFacts:
    """What the insurer reads of a prescription (common.v1.Prescription)."""
    issued_at = rx.issued_at.ToDatetime(tzinfo=timezone.utc)
    identifier = rx.patient.identifier
    citizen_id = identifier.citizen_id if identifier.WhichOneof("kind") == "citizen_id" else ""
    visit = Visit(visit_key(rx.facility_code, rx.encounter.id.strip(), rx.code), rx.encounter.other_costs_vnd,
                  local_day(issued_at) if rx.HasField("issued_at") else None, issued_at)
    return PrescriptionFacts(rx.code, rx.facility_code.lower(), Patient(citizen_id.strip(),
                                                                     rx.patient.bhyt_card.strip().upper()),
                             tuple((l.line_number, l.drug_code, l.quantity) for l in rx.lines), visit,
                             frozenset(l.line_number for l in rx.lines if l.not_available_at_facility),
                             dates.from_proto(rx.valid_until) if rx.HasField("valid_until") else None)


def attached_of(rx: common_pb2.Prescription) -> AttachedPrescription:
    return AttachedPrescription(facts_of(rx), rx.SerializeToString(deterministic=True))


def decode_claim_event(envelope: events_pb2.EventEnvelope) -> ClaimSubmitted | ClaimReversalRequested:
    """A ValueError for anything that does not belong on the claims topic (it is dead-lettered)."""
    kind = envelope.WhichOneof("payload")
    payload = payload_of(envelope) if kind else None
    if kind == "claim_reversal_requested":
        return ClaimReversalRequested(envelope.event_id, payload.claim_id, payload.member_id, payload.reason)
    if kind not in ("claim_submitted", "reimbursement_requested"):
        raise ValueError(f"{envelope.event_type} does not belong on the claims topic")
    claim_id = payload.claim_id if kind == "claim_submitted" else payload.reimbursement_id
    day = dates.from_proto(payload.dispensed_on)
    if day is None:
        raise ValueError(f"claim {claim_id} has no valid dispense date")
    if not claim_id or not payload.member_id:
        raise ValueError("a claim needs a claim id and a member id")
    claim = Claim(claim_id, payload.dispense_id, payload.member_id, payload.card_code,
                  payload.prescription_code, day,
                  tuple(ClaimLine(l.line_number, l.drug_code, l.quantity, l.unit_price_vnd, l.fund_vnd)
                        for l in payload.lines), payload.pharmacy_code,
                  payees.FACILITY if kind == "claim_submitted" else payees.PATIENT,
                  "" if kind == "claim_submitted" else payload.invoice_number)
    attached = attached_of(payload.prescription) if payload.HasField("prescription") else None
    return ClaimSubmitted(envelope.event_id, claim, payload.quote_id, attached)


def decode_prescription_event(envelope: events_pb2.EventEnvelope, pseudonyms) -> PrescriptionIssued | None:
    """`pseudonyms`: the patient is followed (the doctor-shopping detector, its alerts) by keyed
    pseudonym, never by the citizen ID."""
    if envelope.WhichOneof("payload") != "prescription_issued":
        return None
    rx = payload_of(envelope).prescription
    patient_key = pseudonyms.of_patient(rx.patient.identifier)
    return PrescriptionIssued(envelope.event_id, rx.code, rx.type in CONTROLLED, patient_key,
                              rx.prescriber.certificate_number, rx.issued_at.ToDatetime(tzinfo=timezone.utc),
                              facts_of(rx))


def _line(d: LineDecision) -> events_pb2.AdjudicatedLine:
    return events_pb2.AdjudicatedLine(
        line_number=d.line_number, drug_code=d.drug_code, outcome=LINE_OUTCOMES[d.outcome], reason_code=d.reason,
        insured_vnd=d.insured_vnd, fund_vnd=d.fund_vnd, patient_vnd=d.patient_vnd, quantity=d.quantity,
        unit_price_vnd=d.unit_price_vnd, payment_ratio=d.payment_ratio, copay_vnd=d.copay_vnd,
        reference_price_vnd=d.reference_price_vnd)


def adjudicated_message(a: Adjudication) -> events_pb2.ClaimAdjudicated:
    message = events_pb2.ClaimAdjudicated(
        claim_id=a.claim_id, dispense_id=a.dispense_id, member_id=a.member_id, card_code=a.card_code,
        outcome=OUTCOMES[a.outcome], reason_code=a.reason, fund_total_vnd=a.fund_total_vnd,
        patient_total_vnd=a.patient_total_vnd, benefit_percent=a.benefit_percent, pharmacy_code=a.pharmacy_code,
        prescription_code=a.prescription_code, copay_exempt=a.copay_exempt, lines=[_line(d) for d in a.lines],
        revision=a.revision, adjusted_by_claim_id=a.adjusted_by, visit_key=a.visit_key,
        visit_cost_vnd=a.visit_cost_vnd, payee=PAYEES[a.payee], invoice_number=a.invoice_number)
    if a.dispensed_on is not None:
        message.dispensed_on.CopyFrom(dates.to_proto(a.dispensed_on))
    message.adjudicated_at.FromDatetime(a.adjudicated_at)
    return message


def encode(event: Outgoing) -> KafkaRecord:
    match event:
        case ClaimAdjudicated(event_id, outcome):
            topic, key, message, at = CLAIMS_ADJUDICATED, outcome.member_id, adjudicated_message(outcome), \
                outcome.adjudicated_at
        case DoctorShoppingAlert(alert_id, patient_key, found, window_days, occurred_at):
            message = events_pb2.SafetyAlert(
                alert_id=alert_id, kind=events_pb2.ALERT_KIND_DOCTOR_SHOPPING, patient_key=patient_key,
                prescription_codes=list(found.codes), prescriber_ids=list(found.prescribers),
                detail=f"{len(found.prescribers)} prescribers of narcotic or psychotropic drugs within "
                       f"{window_days} days")
            message.window_start.FromDatetime(found.window_start)
            message.window_end.FromDatetime(found.window_end)
            topic, key, event_id, at = ALERTS, patient_key, alert_id, occurred_at
        case _:
            raise TypeError(f"not an insurance event: {event!r}")
    return to_record(new_envelope(message, key=key, producer=PRODUCER, correlation_id=correlation_id.get() or "",
                                  occurred_at=at, event_id=event_id), topic)
