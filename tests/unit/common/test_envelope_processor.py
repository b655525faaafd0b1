from datetime import datetime, timezone
from types import SimpleNamespace

from eprescription.events.v1 import events_pb2

from services.common.events import new_envelope
from services.common.streams import EnvelopeProcessor, MemoryDeduplicator

AT = datetime(2026, 11, 30, tzinfo=timezone.utc)


class RecordingDeadLetters:
    def __init__(self):
        self.sent = []

    async def send(self, event, error):
        self.sent.append((event.value, error))


def event_of(value: bytes):
    return SimpleNamespace(value=value, headers={}, message=SimpleNamespace(topic="t", partition=0, offset=1))


def envelope_bytes(reason="r"):
    env = new_envelope(events_pb2.PrescriptionCancelled(code="c", reason=reason), key="c",
                       producer="p", correlation_id="cid", occurred_at=AT)
    return env.event_id, env.SerializeToString()


def processor():
    dead = RecordingDeadLetters()
    return EnvelopeProcessor("unit", MemoryDeduplicator(), dead, max_backoff=0.01), dead


async def test_a_good_event_is_handled_once_even_when_redelivered():
    proc, dead = processor()
    handled = []

    async def handle(env):
        handled.append(env.event_id)

    event_id, value = envelope_bytes()
    assert await proc.process(event_of(value), handle) == "handled"
    assert await proc.process(event_of(value), handle) == "duplicate"
    assert handled == [event_id] and dead.sent == []


async def test_undecodable_bytes_go_to_the_dead_letters():
    proc, dead = processor()

    async def handle(env):
        raise AssertionError("must not be called")

    assert await proc.process(event_of(b"\x00garbage"), handle) == "dead-lettered"
    assert dead.sent[0][0] == b"\x00garbage"


async def test_a_handler_that_rejects_the_message_sends_it_to_the_dead_letters_and_does_not_remember_it():
    proc, dead = processor()

    async def handle(env):
        raise ValueError("line 3 names an unknown drug")

    _, value = envelope_bytes()
    assert await proc.process(event_of(value), handle) == "dead-lettered"
    assert "unknown drug" in str(dead.sent[0][1])
    calls = []

    async def fixed(env):
        calls.append(env.event_id)

    assert await proc.process(event_of(value), fixed) == "handled"  # a replay after a fix still applies


async def test_an_infrastructure_failure_is_retried_not_dead_lettered():
    proc, dead = processor()
    attempts = []

    async def flaky(env):
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("redis went away")

    _, value = envelope_bytes()
    assert await proc.process(event_of(value), flaky) == "handled"
    assert len(attempts) == 3 and dead.sent == []
