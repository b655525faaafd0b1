"""Prescribing's events on the wire: domain events to envelopes (with the request's
correlation id), and the events its projections read back to domain values."""
from __future__ import annotations

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common.events import KafkaRecord, new_envelope, payload_of, to_record
from services.common.logging import correlation_id
from services.common.topics import PRESCRIPTIONS
from services.prescribing.domain import events

PRODUCER = "prescribing"


def wire_form(event: events.Event):
    """(key, message) of a prescribing event; every one goes to rx.prescriptions.v1."""
    match event:
        case events.PrescriptionIssued():
            rx = common_pb2.Prescription.FromString(event.prescription.document)
            return rx.code, events_pb2.PrescriptionIssued(prescription=rx, override_reason=event.override_reason)
        case events.PrescriptionReplaced():
            rx = common_pb2.Prescription.FromString(event.replacement.document)
            return event.replaced_code, events_pb2.PrescriptionReplaced(replaced_code=event.replaced_code,
                                                                        replacement=rx, reason=event.reason)
        case events.PrescriptionCancelled():
            return event.code, events_pb2.PrescriptionCancelled(code=event.code, reason=event.reason,
                                                                cancelled_by=event.cancelled_by)
    raise TypeError(f"not a prescribing event: {event!r}")


def encode(event: events.Event) -> KafkaRecord:
    key, message = wire_form(event)
    return to_record(new_envelope(message, key=key, producer=PRODUCER, correlation_id=correlation_id.get() or "",
                                  occurred_at=event.occurred_at), PRESCRIPTIONS)


def decode(envelope: events_pb2.EventEnvelope
           ) -> events.PrescriptionChanged | events.DispenseRecorded | events.DispensingClosed | None:
    kind = envelope.WhichOneof("payload")
    if kind is None:
        return None
    payload = payload_of(envelope)
    if kind == "prescription_issued":
        return events.PrescriptionChanged(payload.prescription.code)
    if kind == "prescription_replaced":
        return events.PrescriptionChanged(payload.replaced_code)
    if kind == "prescription_cancelled":
        return events.PrescriptionChanged(payload.code)
    if kind == "dispensing_closed":
        return events.DispensingClosed(payload.prescription_code,
                                       tuple((line.line_number, line.quantity) for line in payload.lines))
    if kind in ("medication_dispensed", "dispense_reversed"):
        return events.DispenseRecorded(envelope.event_id, payload.dispense_id, payload.prescription_code,
                                       1 if kind == "medication_dispensed" else -1,
                                       tuple((line.line_number, line.quantity) for line in payload.lines))
    return None
