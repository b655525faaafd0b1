from datetime import datetime, timezone

import pytest
from eprescription.events.v1 import events_pb2
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from services.common.events import HEADER_EVENT_TYPE, decode, header, new_envelope, payload_of, to_record
from tests.support import read_topic

AT = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def test_envelopes_go_through_the_real_broker_intact_and_in_key_order(settings, make_topic):
    topic = make_topic("envelope")
    sent = []
    producer = KafkaProducer(**settings.kafka_access("admin").kwargs(), acks="all",
                             enable_idempotence=True, max_in_flight_requests_per_connection=1)
    for i, quantity in enumerate((10, 5, 15)):
        dispensed = events_pb2.MedicationDispensed(
            dispense_id=f"d{i}", prescription_code="01234ab3k9x2-c", pharmacy_code="PH0001",
            lines=[events_pb2.DispensedLine(line_number=1, drug_code="VD-1234-12", quantity=quantity,
                                            unit_price_vnd=1500)])
        env = new_envelope(dispensed, key="01234ab3k9x2-c", producer="pharmacy", correlation_id=f"c{i}",
                           occurred_at=AT)
        record = to_record(env, topic)
        producer.send(record.topic, key=record.key, value=record.value, headers=list(record.headers)).get(10)
        sent.append(env)
    producer.close()

    records = read_topic(settings.kafka_access("admin"), topic, at_least=3)
    assert [header(r.headers, HEADER_EVENT_TYPE) for r in records] == ["MedicationDispensed"] * 3
    received = [decode(r.value) for r in records]
    assert received == sent  # one key, one partition: order kept, bytes intact
    assert [payload_of(e).lines[0].quantity for e in received] == [10, 5, 15]
    assert len({r.partition for r in records}) == 1


def test_the_broker_does_not_create_topics_on_first_use(settings):
    producer = KafkaProducer(**settings.kafka_access("admin").kwargs(), max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send("never.declared.v1", value=b"x").get(5)
    finally:
        producer.close(timeout=1)
