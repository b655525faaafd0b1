"""The pharmacy's events on the wire: domain events to envelopes (with the request's
correlation id) and the prescription events it reads back to domain values."""
from __future__ import annotations

from datetime import timezone

from google.protobuf.timestamp_pb2 import Timestamp
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common import dates
from services.common.events import KafkaRecord, new_envelope, payload_of, to_record
from services.common.logging import correlation_id
from services.common.topics import CLAIMS, DISPENSES
from services.pharmacy.domain import events
from services.pharmacy.domain.model import PrescribedLine, Prescription, SoldLine

PRODUCER = "pharmacy"
CLOSED_STATUS = {"cancelled": common_pb2.PRESCRIPTION_STATUS_CANCELLED,
                 "replaced": common_pb2.PRESCRIPTION_STATUS_REPLACED}


def prescription_of(document: bytes) -> Prescription:
    """The signed prescription (serialised common.v1.Prescription) as the dispensing rules see it."""
    rx = common_pb2.Prescription.FromString(document)
    valid_until = dates.from_proto(rx.valid_until)
    if valid_until is None:
        raise ValueError(f"prescription {rx.code} has no valid_until")
    batches = {b.number: (dates.from_proto(b.start), dates.from_proto(b.end)) for b in rx.batches}
    lines = tuple(PrescribedLine(line.line_number, line.drug_code, line.quantity,
                                 *batches.get(line.batch_number, (None, None)))
                  for line in rx.lines)
    return Prescription(rx.code, rx.facility_code, rx.patient.bhyt_card, tuple(d.icd10 for d in rx.diagnoses),
                        valid_until, lines, document, rx.replaces_code, rx.new_supply)


def decode_prescription_event(envelope: events_pb2.EventEnvelope
                              ) -> events.PrescriptionIssued | events.PrescriptionClosed | None:
    kind = envelope.WhichOneof("payload")
    payload = payload_of(envelope)
    at = envelope.occurred_at.ToDatetime(tzinfo=timezone.utc) if envelope.HasField("occurred_at") else None
    if kind == "prescription_issued":
        return events.PrescriptionIssued(prescription_of(payload.prescription.SerializeToString(deterministic=True)),
                                         at)
    if kind == "prescription_replaced":
        return events.PrescriptionClosed(payload.replaced_code, "replaced", payload.replacement.code, at)
    if kind == "prescription_cancelled":
        return events.PrescriptionClosed(payload.code, "cancelled", at=at)
    return None


def _timestamp(moment) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _lines(lines: tuple[SoldLine, ...], pharmacy: str = "") -> list[events_pb2.DispensedLine]:
    return [events_pb2.DispensedLine(line_number=l.line_number, drug_code=l.drug_code, quantity=l.quantity,
                                     unit_price_vnd=l.unit_price_vnd, substitution=l.substitution,
                                     substituted_by=pharmacy if l.substitution else "")
            for l in lines]


def _claim_lines(lines: tuple[SoldLine, ...], quote, *, reimbursement: bool) -> list[events_pb2.ClaimLine]:
    """The sold lines with the quote's amounts: what the fund is asked to pay the facility, or
    (a reimbursement) the patient, who paid the whole price at the counter."""
    out = []
    for l in lines:
        q = quote.lines[l.line_number]
        out.append(events_pb2.ClaimLine(
            line_number=l.line_number, drug_code=l.drug_code, quantity=l.quantity, unit_price_vnd=l.unit_price_vnd,
            payment_ratio=q.payment_ratio, insured_vnd=q.insured_vnd,
            fund_vnd=q.reimbursable_vnd if reimbursement else q.fund_vnd,
            patient_vnd=l.quantity * l.unit_price_vnd if reimbursement else q.patient_vnd))
    return out


def wire_form(event: events.Event):
    match event:
        case events.MedicationDispensed():
            rx = common_pb2.Prescription.FromString(event.prescription.document)
            bhyt = bool(event.claim_id) and event.payer_bhyt
            return DISPENSES, event.prescription.code, events_pb2.MedicationDispensed(
                dispense_id=event.dispense_id, prescription_code=event.prescription.code,
                pharmacy_code=event.pharmacy, payer=events_pb2.PAYER_BHYT if bhyt else events_pb2.PAYER_SELF,
                claim_id=event.claim_id if bhyt else "",
                lines=_lines(event.lines, event.pharmacy), invoice_number=event.invoice_number,
                reimbursement_id="" if bhyt else event.claim_id, idempotency_key=event.idempotency_key,
                request_fingerprint=event.fingerprint, dispensed_at=_timestamp(event.occurred_at),
                receipt=[events_pb2.ReceiptLine(line_number=r.line_number, quantity=r.quantity, insured_vnd=r.insured_vnd,
                                                fund_vnd=r.fund_vnd, patient_vnd=r.patient_vnd,
                                                reimbursable_vnd=r.reimbursable_vnd)
                         for r in (event.receipt.lines if event.receipt else ())])
        case events.ClaimSubmitted():
            rx = common_pb2.Prescription.FromString(event.prescription.document)
            return CLAIMS, event.quote.member_id, events_pb2.ClaimSubmitted(
                claim_id=event.claim_id, dispense_id=event.dispense_id, quote_id=event.quote.quote_id,
                member_id=event.quote.member_id, card_code=event.quote.card_code,
                facility_code=event.prescription.facility_code, pharmacy_code=event.pharmacy,
                prescription_code=event.prescription.code, dispensed_on=dates.to_proto(event.dispensed_on),
                prescription=rx, lines=_claim_lines(event.lines, event.quote, reimbursement=False))
        case events.ReimbursementRequested():
            rx = common_pb2.Prescription.FromString(event.prescription.document)
            return CLAIMS, event.quote.member_id, events_pb2.ReimbursementRequested(
                reimbursement_id=event.reimbursement_id, dispense_id=event.dispense_id, quote_id=event.quote.quote_id,
                member_id=event.quote.member_id, card_code=event.quote.card_code,
                facility_code=event.prescription.facility_code, pharmacy_code=event.pharmacy,
                prescription_code=event.prescription.code, dispensed_on=dates.to_proto(event.dispensed_on),
                invoice_number=event.invoice_number, prescription=rx,
                lines=_claim_lines(event.lines, event.quote, reimbursement=True))
        case events.DispenseReversed():
            record = event.record
            return DISPENSES, record.code, events_pb2.DispenseReversed(
                dispense_id=record.dispense_id, prescription_code=record.code, pharmacy_code=record.pharmacy,
                reason=event.reason, lines=_lines(record.lines))
        case events.ClaimReversalRequested():
            return CLAIMS, event.member_id, events_pb2.ClaimReversalRequested(
                claim_id=event.claim_id, dispense_id=event.dispense_id, member_id=event.member_id,
                reason=event.reason)
        case events.DispensingClosed(closed):
            rx = closed.prescription
            return DISPENSES, rx.code, events_pb2.DispensingClosed(
                prescription_code=rx.code, successor_code=closed.successor,
                status=CLOSED_STATUS[closed.status],
                lines=[events_pb2.DispensedLine(line_number=l.line_number, drug_code=l.drug_code,
                                                quantity=closed.dispensed.get(l.line_number, 0)) for l in rx.lines])
    raise TypeError(f"not a pharmacy event: {event!r}")


def encode(event: events.Event) -> KafkaRecord:
    topic, key, message = wire_form(event)
    return to_record(new_envelope(message, key=key, producer=PRODUCER, correlation_id=correlation_id.get() or "",
                                  occurred_at=event.occurred_at), topic)
