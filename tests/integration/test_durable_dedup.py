"""De-duplication that survives a restart: a consumer's handled event ids live in Redis
(under the service's own ACL user and key patterns) for a bounded time, with the recent ones
in a bounded memory in front (services/common/streams.py)."""
from types import SimpleNamespace


from eprescription.events.v1 import events_pb2
from services.common.events import new_envelope
from services.common.streams import DurableDeduplicator, EnvelopeProcessor, RedisDeduplicator
from services.kernel.calendar import utc_now
from tests.support import admin_redis_async, eventually


class NoDeadLetters:
    async def send(self, event, error):  # pragma: no cover - a good event is never dead-lettered
        raise AssertionError(f"dead-lettered: {error!r}")


def event():
    env = new_envelope(events_pb2.PrescriptionCancelled(code="c", reason="r"), key="c", producer="p",
                       correlation_id="cid", occurred_at=utc_now())
    return SimpleNamespace(value=env.SerializeToString(), headers={},
                           message=SimpleNamespace(topic="t", partition=0, offset=1)), env.event_id


def as_service(settings, service):
    return admin_redis_async(settings.redis_url_for(service), protocol=3)


async def test_a_restarted_consumer_skips_what_its_predecessor_handled(settings):
    handled = []

    async def handle(envelope):
        handled.append(envelope.event_id)

    for service in ("prescribing", "pharmacy", "insurance"):   # each on its own user: the keys fit its ACL
        client = as_service(settings, service)
        message, event_id = event()
        consumer = f"{service}-dedup-test"
        first = EnvelopeProcessor(consumer, DurableDeduplicator(RedisDeduplicator(client, consumer)), NoDeadLetters())
        assert await first.process(message, handle) == "handled"
        # A new process: its memory is empty, Redis still knows.
        restarted = EnvelopeProcessor(consumer, DurableDeduplicator(RedisDeduplicator(client, consumer)),
                                      NoDeadLetters())
        assert await restarted.process(message, handle) == "duplicate"
        # Another consumer of the same events keeps its own record.
        other = EnvelopeProcessor(f"{consumer}-other", DurableDeduplicator(RedisDeduplicator(client, f"{consumer}-other")),
                                  NoDeadLetters())
        assert await other.process(message, handle) == "handled"
        assert handled.count(event_id) == 2
        await client.aclose()


async def _gone(client, key: str) -> bool:
    return not await client.exists(key)


async def test_the_record_is_bounded_in_time_and_memory(settings):
    client = as_service(settings, "pharmacy")
    durable = RedisDeduplicator(client, "pharmacy-dedup-ttl", ttl_seconds=1)
    dedup = DurableDeduplicator(durable, capacity=10)
    ids = [f"e-{i}" for i in range(25)]
    for event_id in ids:
        await dedup.remember(event_id)
    assert len(dedup._recent._ids) == 10                       # memory holds the 10 most recent
    assert all([await dedup.seen(event_id) for event_id in ids])  # Redis answers for the rest
    ttl = await client.pttl(durable.key(ids[0]))
    assert 0 < ttl <= 1000
    await eventually(lambda: _gone(client, durable.key(ids[0])), timeout=10, message="the id's key expired")
    fresh = DurableDeduplicator(durable, capacity=10)
    assert not await fresh.seen(ids[0])                        # expired: gone from Redis
    await client.aclose()
