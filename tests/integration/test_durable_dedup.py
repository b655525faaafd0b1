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


def event(offset: int = 1, partition: int = 0):
    env = new_envelope(events_pb2.PrescriptionCancelled(code="c", reason="r"), key="c", producer="p",
                       correlation_id="cid", occurred_at=utc_now())
    return SimpleNamespace(value=env.SerializeToString(), headers={},
                           message=SimpleNamespace(topic="t", partition=partition, offset=offset)), env.event_id


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
        durable = RedisDeduplicator(client, consumer)
        first = EnvelopeProcessor(consumer, DurableDeduplicator(durable), NoDeadLetters())
        assert await first.process(message, handle) == "handled"
        # Remembered in Redis a moment later, without a call (a batch per 50 ms)
        await eventually(lambda: client.exists(durable.key(event_id)), timeout=5, message="the id in Redis")
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
    assert all([await dedup.seen(event_id) for event_id in ids])  # before they reach Redis too
    await dedup.flush()
    assert len(dedup._recent._ids) == 10                       # memory holds the 10 most recent
    assert all([await dedup.seen(event_id) for event_id in ids])  # Redis answers for the rest
    ttl = await client.pttl(durable.key(ids[0]))
    assert 0 < ttl <= 1000
    await eventually(lambda: _gone(client, durable.key(ids[0])), timeout=10, message="the id's key expired")
    fresh = DurableDeduplicator(durable, capacity=10)
    assert not await fresh.seen(ids[0])                        # expired: gone from Redis
    await client.aclose()


class Counting:
    """The real client, counting the EXISTS questions this de-duplicator asks (the server's own
    counters would also count whatever else runs against it meanwhile)."""

    def __init__(self, client):
        self._client, self.asked = client, 0

    async def exists(self, *keys):
        self.asked += 1
        return await self._client.exists(*keys)

    def __getattr__(self, name):
        return getattr(self._client, name)


async def test_redis_is_asked_only_where_another_process_may_have_handled_the_event(settings):
    """A partition read without a gap needs no question to Redis; the first event after a
    start, a gap or a duplicate does, and what another process handled is skipped."""
    client = Counting(as_service(settings, "pharmacy"))
    consumer = f"pharmacy-dedup-gapless-{utc_now().timestamp()}"
    durable = RedisDeduplicator(client, consumer)
    # Another process handled these two (offsets 5 and 6 of partition 0), then stopped.
    earlier = [event(5), event(6)]
    await durable.remember_all([event_id for _, event_id in earlier])
    handled = []

    async def handle(envelope):
        handled.append(envelope.event_id)

    dedup = DurableDeduplicator(durable)
    processor = EnvelopeProcessor(consumer, dedup, NoDeadLetters())
    assert [await processor.process(m, handle) for m, _ in earlier] == ["duplicate", "duplicate"]
    fresh = [event(offset) for offset in range(7, 107)]
    assert {await processor.process(m, handle) for m, _ in fresh} == {"handled"}
    # two duplicates and the first event after them asked Redis; the 99 that followed did not
    assert client.asked == 3
    # a gap (offsets 107-109 were never seen here) and another partition: asked again
    assert await processor.process(event(110)[0], handle) == "handled"
    assert await processor.process(event(1, partition=1)[0], handle) == "handled"
    assert client.asked == 5
    # after a revocation the next event is asked about too
    dedup.forget_positions()
    assert await processor.process(event(111)[0], handle) == "handled"
    assert client.asked == 6
    # every handled id reaches Redis in batches: a new process skips each of them
    await dedup.flush()
    restarted = EnvelopeProcessor(consumer, DurableDeduplicator(durable), NoDeadLetters())
    assert {await restarted.process(m, handle) for m, _ in fresh} == {"duplicate"}
    assert len(handled) == 103
    await client.aclose()
