"""A Faust agent on a pre-created topic, through the real broker: poison messages go to the
dead-letter topic with their error, and the agent goes on."""
import os
import signal
import subprocess
from datetime import datetime, timezone

from eprescription.events.v1 import events_pb2
from kafka import KafkaProducer

from services.common.events import header, new_envelope, to_record
from tests.support import read_topic, wait_until

AT = datetime(2026, 11, 30, tzinfo=timezone.utc)
PROBE = os.path.join(os.path.dirname(__file__), "faust_probe.py")


def envelope(reason):
    return new_envelope(events_pb2.PrescriptionCancelled(code="01234ab3k9x2-c", reason=reason),
                        key="01234ab3k9x2-c", producer="test", correlation_id="c", occurred_at=AT)


def test_poison_goes_to_the_dlq_and_the_agent_goes_on(settings, make_topic, redis_sync, python, subprocess_env):
    topic = make_topic("faust")
    good = [envelope(f"ok-{i}") for i in range(3)]
    exploding = envelope("explode")
    producer = KafkaProducer(**settings.kafka_access("admin").kwargs(), acks="all")
    sequence = [("good", good[0]), ("garbage", b"\x08\x96\x01 not protobuf at all"), ("good", good[1]),
                ("rejected", exploding), ("duplicate", good[0]), ("good", good[2])]
    for kind, item in sequence:
        if kind == "garbage":
            producer.send(topic, key=b"01234ab3k9x2-c", value=item, headers=[("event-type", b"Junk")])
        else:
            record = to_record(item, topic)
            producer.send(topic, key=record.key, value=record.value, headers=list(record.headers))
    producer.flush()
    producer.close()

    worker = subprocess.Popen([python, PROBE, "worker", "-l", "warn", "--without-web"],
                              env=dict(subprocess_env, PROBE_TOPIC=topic),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        handled_key = f"probe:{topic}:handled"
        wait_until(lambda: redis_sync.llen(handled_key) >= 3 or worker.poll() is not None,
                   timeout=90, message="three good events handled")
        assert worker.poll() is None, worker.stdout.read().decode()[-3000:]
        dead = read_topic(settings.kafka_access("admin"), f"{topic}.dlq", at_least=2)
        handled = [x.decode() for x in redis_sync.lrange(handled_key, 0, -1)]
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0].decode()

    assert handled == [e.event_id for e in good], output[-3000:]  # in order, the duplicate skipped
    assert len(dead) == 2
    garbage, rejected = dead
    assert garbage.value.startswith(b"\x08\x96\x01")
    assert "not an EventEnvelope" in header(garbage.headers, "dlq-error")
    assert header(garbage.headers, "event-type") == "Junk"  # the original headers travel along
    assert rejected.value == to_record(exploding, topic).value
    assert "cannot accept this event" in header(rejected.headers, "dlq-error")
    assert header(rejected.headers, "dlq-source-topic") == topic
    assert int(header(rejected.headers, "dlq-source-offset")) == 3
