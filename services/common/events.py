"""The event envelope: building, encoding to Kafka records, and decoding with clear errors."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from google.protobuf.message import DecodeError, Message

from eprescription.events.v1 import events_pb2

SCHEMA_VERSION = 1
HEADER_EVENT_TYPE = "event-type"
HEADER_CORRELATION_ID = "correlation-id"
HEADER_EVENT_ID = "event-id"

_PAYLOAD_FIELDS = {
    f.message_type.name: f.name
    for f in events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["payload"].fields
}


class EventDecodeError(ValueError):
    """The bytes are not a usable envelope; the message belongs in the dead-letter topic."""


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_id: str


def new_envelope(payload: Message, *, key: str, producer: str, correlation_id: str,
                 occurred_at: datetime, event_id: str | None = None) -> events_pb2.EventEnvelope:
    type_name = payload.DESCRIPTOR.name
    field_name = _PAYLOAD_FIELDS.get(type_name)
    if field_name is None:
        raise TypeError(f"{type_name} is not an event of the envelope")
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    envelope = events_pb2.EventEnvelope(
        event_id=event_id or str(uuid.uuid4()),
        event_type=type_name,
        producer=producer,
        correlation_id=correlation_id,
        schema_version=SCHEMA_VERSION,
        key=key,
    )
    envelope.occurred_at.FromDatetime(occurred_at.astimezone(timezone.utc))
    getattr(envelope, field_name).CopyFrom(payload)
    return envelope


def to_record(envelope: events_pb2.EventEnvelope, topic: str) -> KafkaRecord:
    return KafkaRecord(
        topic=topic,
        key=envelope.key.encode(),
        value=envelope.SerializeToString(deterministic=True),
        headers=(
            (HEADER_EVENT_TYPE, envelope.event_type.encode()),
            (HEADER_CORRELATION_ID, envelope.correlation_id.encode()),
            (HEADER_EVENT_ID, envelope.event_id.encode()),
        ),
        event_id=envelope.event_id,
    )


def decode(value: bytes | None) -> events_pb2.EventEnvelope:
    if not value:
        raise EventDecodeError("empty message")
    envelope = events_pb2.EventEnvelope()
    try:
        envelope.ParseFromString(value)
    except DecodeError as exc:
        raise EventDecodeError(f"not an EventEnvelope: {exc}") from None
    if not envelope.event_id:
        raise EventDecodeError("envelope has no event_id")
    payload_field = envelope.WhichOneof("payload")
    if payload_field is None:
        raise EventDecodeError(f"envelope {envelope.event_id} has no payload")
    if _PAYLOAD_FIELDS.get(envelope.event_type) != payload_field:
        raise EventDecodeError(
            f"envelope {envelope.event_id}: event_type {envelope.event_type!r} "
            f"does not match payload {payload_field!r}")
    return envelope


def payload_of(envelope: events_pb2.EventEnvelope) -> Message:
    return getattr(envelope, envelope.WhichOneof("payload"))


def header(headers, name: str) -> str | None:
    """Reads a header from kafka-python / aiokafka / faust header lists or dicts."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in items:
        if key == name:
            return value.decode() if isinstance(value, (bytes, bytearray)) else value
    return None
