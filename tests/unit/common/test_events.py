from datetime import datetime, timezone

import pytest
from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common.events import (EventDecodeError, HEADER_CORRELATION_ID, HEADER_EVENT_TYPE, decode,
                                    header, new_envelope, payload_of, to_record)

AT = datetime(2026, 11, 30, 8, 15, tzinfo=timezone.utc)


def cancelled(code="01234ab3k9x2-c"):
    return events_pb2.PrescriptionCancelled(code=code, reason="patient request", cancelled_by="01234")


def test_the_envelope_carries_type_key_and_payload():
    env = new_envelope(cancelled(), key="01234ab3k9x2-c", producer="prescribing", correlation_id="c1",
                       occurred_at=AT)
    assert env.event_type == "PrescriptionCancelled"
    assert env.WhichOneof("payload") == "prescription_cancelled"
    assert env.occurred_at.ToDatetime(tzinfo=timezone.utc) == AT
    assert len(env.event_id) == 36 and env.schema_version == 1
    assert payload_of(decode(env.SerializeToString())).reason == "patient request"


def test_the_record_routes_without_decoding():
    env = new_envelope(cancelled(), key="k1", producer="p", correlation_id="c9", occurred_at=AT)
    record = to_record(env, "rx.prescriptions.v1")
    assert record.key == b"k1" and record.event_id == env.event_id
    assert header(record.headers, HEADER_EVENT_TYPE) == "PrescriptionCancelled"
    assert header(record.headers, HEADER_CORRELATION_ID) == "c9"


def test_only_events_of_the_envelope_and_aware_times_are_accepted():
    with pytest.raises(TypeError, match="not an event"):
        new_envelope(common_pb2.Date(year=2026), key="k", producer="p", correlation_id="c", occurred_at=AT)
    with pytest.raises(ValueError, match="timezone-aware"):
        new_envelope(cancelled(), key="k", producer="p", correlation_id="c", occurred_at=datetime(2026, 1, 1))


@pytest.mark.parametrize("value, message", [
    (b"", "empty"),
    (None, "empty"),
    (b"\xff\xff\xff garbage", "not an EventEnvelope"),
    (events_pb2.EventEnvelope(event_type="PrescriptionCancelled").SerializeToString(), "no event_id"),
    (events_pb2.EventEnvelope(event_id="e1", event_type="PrescriptionCancelled").SerializeToString(), "no payload"),
])
def test_undecodable_messages_say_why(value, message):
    with pytest.raises(EventDecodeError, match=message):
        decode(value)


def test_a_type_that_lies_about_the_payload_is_refused():
    env = new_envelope(cancelled(), key="k", producer="p", correlation_id="c", occurred_at=AT)
    env.event_type = "MedicationDispensed"
    with pytest.raises(EventDecodeError, match="does not match"):
        decode(env.SerializeToString())
