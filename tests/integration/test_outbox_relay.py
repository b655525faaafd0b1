"""The outbox relay against the real Redis and Kafka, including SIGKILL at the worst moments."""
import signal
import subprocess
import threading
import uuid
from collections import defaultdict
from datetime import datetime, timezone

import pytest
from eprescription.events.v1 import events_pb2
from kafka import KafkaProducer

from services.common import dlq, liveness
from services.common.events import decode, new_envelope, payload_of, to_record
from services.common.outbox import OutboxLayout, OutboxScript, encode_headers
from services.common.outbox_dead import redrive
from services.common.outbox_relay import OutboxRelay, kafka_producer
from tests.support import read_topic, wait_until

AT = datetime(2026, 11, 30, tzinfo=timezone.utc)

# Records a state value and its event only if the state is not there yet: the shape of
# every command script (check, apply, append), reduced to its essentials.
RECORD_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return outbox_append(KEYS[1])
"""


async def write_events(redis_async, layout, topic, keys, per_key):
    script = OutboxScript(redis_async, RECORD_ONCE)
    written = defaultdict(list)
    for seq in range(per_key):
        for key in keys:
            env = new_envelope(events_pb2.PrescriptionCancelled(code=key, reason=str(seq)), key=key,
                               producer="test", correlation_id="c", occurred_at=AT)
            shard = layout.shard_of(key)
            n = await script([layout.stream(shard), layout.key(shard, "state", key, str(seq))], ["v"],
                             [to_record(env, topic)])
            assert n == 1
            written[key].append(env.event_id)
    return written


def outbox_length(redis_sync, layout):
    return sum(redis_sync.xlen(s) for s in layout.streams())


def relay(python, env, keyspace, crash_at=None):
    env = dict(env, **({"EPRX_CRASH_AT": crash_at} if crash_at else {}))
    return subprocess.Popen([python, "-m", "services.common.outbox_relay", keyspace, "--principal", "admin"],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stdout.read().decode()[-2000:]


async def test_state_and_event_are_written_together_or_not_at_all(settings, redis_async, redis_sync):
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", settings.outbox_shards)
    script = OutboxScript(redis_async, RECORD_ONCE)
    env = new_envelope(events_pb2.PrescriptionCancelled(code="k"), key="k", producer="t",
                       correlation_id="c", occurred_at=AT)
    keys = [layout.stream(0), layout.key(0, "state", "k")]
    assert await script(keys, ["v"], [to_record(env, "t")]) == 1
    assert await script(keys, ["v"], [to_record(env, "t")]) == 0  # refused: nothing appended
    assert redis_sync.xlen(layout.stream(0)) == 1


@pytest.mark.parametrize("crash_at, duplicates_expected", [
    ("relay.after_produce", True),    # Kafka has the batch, Redis still has it too
    ("relay.before_produce", False),  # read from Redis, nothing sent yet
])
async def test_a_relay_killed_mid_batch_loses_nothing(settings, redis_async, redis_sync, make_topic,
                                                     python, subprocess_env, crash_at, duplicates_expected):
    topic = make_topic("outbox")
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", settings.outbox_shards)
    keys = [f"01234{uuid.uuid4().hex[:7]}-c" for _ in range(6)]
    written = await write_events(redis_async, layout, topic, keys, per_key=10)
    assert outbox_length(redis_sync, layout) == 60

    doomed = relay(python, subprocess_env, layout.service, crash_at=crash_at)
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    assert outbox_length(redis_sync, layout) == 60  # nothing trimmed that Kafka did not acknowledge

    survivor = relay(python, subprocess_env, layout.service)
    wait_until(lambda: outbox_length(redis_sync, layout) == 0, timeout=60, message="outbox drained")
    stop(survivor)

    records = read_topic(settings.kafka_access("admin"), topic, at_least=60)
    envelopes = [decode(r.value) for r in records]
    assert (len(envelopes) > 60) is duplicates_expected
    seen, per_key = set(), defaultdict(list)
    for env in envelopes:  # what a consumer sees after de-duplicating on the event id
        if env.event_id not in seen:
            seen.add(env.event_id)
            per_key[env.key].append(env)
    assert {k: [e.event_id for e in v] for k, v in per_key.items()} == dict(written)
    for key, events in per_key.items():
        assert [payload_of(e).reason for e in events] == [str(i) for i in range(10)]


async def test_two_relays_share_the_work_without_losing_or_reordering(settings, redis_async, redis_sync,
                                                                     make_topic, python, subprocess_env):
    topic = make_topic("outbox2")
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", settings.outbox_shards)
    env_a, env_b = dict(subprocess_env, EPRX_REPLICA="a"), dict(subprocess_env, EPRX_REPLICA="b")
    relays = [relay(python, env_a, layout.service), relay(python, env_b, layout.service)]
    keys = [f"79001{uuid.uuid4().hex[:7]}-c" for _ in range(8)]
    written = await write_events(redis_async, layout, topic, keys, per_key=25)
    wait_until(lambda: outbox_length(redis_sync, layout) == 0, timeout=60, message="outbox drained")
    for replica in ("a", "b"):   # each replica's liveness file, fresh while it runs
        beat = settings.run_dir / "live" / f"{layout.service}-relay-{replica}"
        # the other replica may still be starting when the first has drained the outbox alone
        wait_until(lambda: liveness.age(beat) is not None, timeout=30, message=f"relay {replica}'s first beat")
        assert liveness.age(beat) < 10
    for proc in relays:
        stop(proc)
    envelopes = [decode(r.value) for r in read_topic(settings.kafka_access("admin"), topic, at_least=200)]
    per_key = defaultdict(list)
    for env in envelopes:
        per_key[env.key].append(env.event_id)
    assert dict(per_key) == dict(written)  # exactly once each, in order, with no crash


def envelope_record(topic, key, reason, size=0):
    env = new_envelope(events_pb2.PrescriptionCancelled(code=key, reason=reason + "x" * size), key=key,
                       producer="test", correlation_id="c", occurred_at=AT)
    return env, to_record(env, topic)


async def test_an_entry_kafka_can_never_take_is_set_aside_and_its_shard_goes_on(settings, redis_async, redis_sync,
                                                                               make_topic):
    topic = make_topic("dead")
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", settings.outbox_shards)
    script = OutboxScript(redis_async, RECORD_ONCE)
    key = f"01234{uuid.uuid4().hex[:7]}-c"
    shard = layout.shard_of(key)
    envelopes = []
    for n, size in enumerate((0, 2 * 1024 * 1024, 0)):
        env, record = envelope_record(topic, key, str(n), size)
        envelopes.append(env)
        if size:  # over Kafka's 1 MiB: written as an older version (before the size guard) could
            redis_sync.xadd(layout.stream(shard), {"event_id": record.event_id, "topic": record.topic,
                                                   "key": record.key, "headers": encode_headers(record.headers),
                                                   "value": record.value})
        else:
            await script([layout.stream(shard), layout.key(shard, "state", key, str(n))], ["v"], [record])
    relay = OutboxRelay(redis_sync, kafka_producer(settings.kafka_access("admin"), "test-relay"), layout,
                        owner=f"test-{uuid.uuid4().hex[:6]}", idle_block_ms=50)
    for _ in range(20):
        relay.run_once()
        if redis_sync.xlen(layout.stream(shard)) == 0:
            break
    assert redis_sync.xlen(layout.stream(shard)) == 0
    shipped = [decode(r.value) for r in read_topic(settings.kafka_access("admin"), topic, at_least=2)]
    assert [e.event_id for e in shipped] == [envelopes[0].event_id, envelopes[2].event_id]
    dead = redis_sync.xrange(layout.dead(shard))
    assert len(dead) == 1 and dead[0][1][b"event_id"] == envelopes[1].event_id.encode()
    assert dead[0][1][b"dead_reason"].startswith(b"MessageSizeTooLargeError")

    # Put back (say the topic's limit was raised): it goes through the relay again, and here dies again.
    assert redrive(redis_sync, layout, {dead[0][0].decode()}) == 1
    assert redis_sync.xlen(layout.dead(shard)) == 0 and redis_sync.xlen(layout.stream(shard)) == 1
    relay.run_once()
    assert redis_sync.xlen(layout.stream(shard)) == 0 and redis_sync.xlen(layout.dead(shard)) == 1


async def test_a_dead_entry_put_back_after_its_cause_is_fixed_ships(settings, redis_sync, make_topic):
    topic = make_topic("redrive")
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", settings.outbox_shards)
    env, record = envelope_record(topic, "01234abcdefg-c", "late")
    redis_sync.xadd(layout.dead(2), {"event_id": record.event_id, "topic": record.topic, "key": record.key,
                                     "headers": encode_headers(record.headers), "value": record.value,
                                     "dead_reason": "KafkaError: the broker was misconfigured"})
    assert redrive(redis_sync, layout) == 1
    relay = OutboxRelay(redis_sync, kafka_producer(settings.kafka_access("admin"), "test-relay"), layout,
                        owner=f"test-{uuid.uuid4().hex[:6]}", idle_block_ms=50)
    relay.run_once()
    assert [decode(r.value).event_id for r in read_topic(settings.kafka_access("admin"), topic, at_least=1)] == [env.event_id]


def test_dead_letters_are_sent_back_to_their_source_topic(settings, make_topic, capsys):
    topic = make_topic("dlqredrive")
    env, record = envelope_record(topic, "01234abcdefg-c", "retry me")
    producer = KafkaProducer(**settings.kafka_access("admin").kwargs(), acks="all")
    producer.send(f"{topic}.dlq", key=record.key, value=record.value,
                  headers=list(record.headers) + [("dlq-source-topic", topic.encode()), ("dlq-error", b"boom")]).get(10)
    producer.close()
    assert dlq.main([f"{topic}.dlq", "--redrive"]) == 0
    assert "1 sent back to their source topic, 0 failed" in capsys.readouterr().out
    back = read_topic(settings.kafka_access("admin"), topic, at_least=1)
    assert [r.value for r in back] == [record.value]
    assert all(not k.startswith("dlq-") for k, _ in back[0].headers)


def test_a_dead_letter_that_names_no_source_topic_is_reported_not_sent(settings, make_topic, capsys):
    topic = make_topic("dlqorphan")
    producer = KafkaProducer(**settings.kafka_access("admin").kwargs(), acks="all")
    producer.send(f"{topic}.dlq", key=b"k", value=b"v", headers=[("dlq-error", b"boom")]).get(10)
    producer.close()
    assert dlq.main([f"{topic}.dlq", "--redrive"]) == 1
    out = capsys.readouterr().out
    assert "names no source topic" in out and "0 sent back to their source topic, 1 failed" in out


class TakenOver:
    """At a named point of relay A's round, A's lease lapses and relay B takes the shard: what a
    SIGSTOP of A past its lease, or a partition, does."""

    def __init__(self, point, redis_sync, layout, settings):
        self.point, self.redis, self.layout, self.settings, self.relay_b = point, redis_sync, layout, settings, None

    def __call__(self, name):
        if name == self.point and self.relay_b is None:
            self.redis.delete(self.layout.lease(0))
            self.relay_b = OutboxRelay(self.redis, kafka_producer(self.settings.kafka_access("admin"), "relay-b"),
                                       self.layout, owner="relay-b")
            assert self.relay_b.owned_shards() == [0]


def shipped_ids(settings, topic, at_least):
    return [decode(r.value).event_id for r in read_topic(settings.kafka_access("admin"), topic, at_least=at_least)]


async def taken_over_at(point, settings, redis_async, redis_sync, make_topic):
    """Twenty events in one shard, and relay A whose lease relay B takes at `point` of A's round."""
    topic = make_topic("fence", partitions=1)
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", 1)
    written = await write_events(redis_async, layout, topic, [f"01234{uuid.uuid4().hex[:7]}-c"], per_key=20)
    takeover = TakenOver(point, redis_sync, layout, settings)
    relay_a = OutboxRelay(redis_sync, kafka_producer(settings.kafka_access("admin"), "relay-a"), layout,
                          owner="relay-a", crash_point=takeover)
    expected = [e for ids in written.values() for e in ids]
    return topic, layout, takeover, relay_a, expected


def drain_with(relay, redis_sync, layout) -> None:
    while outbox_length(redis_sync, layout):
        relay.run_once()


async def test_a_relay_that_lost_its_lease_after_reading_ships_nothing(settings, redis_async, redis_sync, make_topic):
    topic, layout, takeover, relay_a, expected = await taken_over_at("relay.before_produce", settings, redis_async,
                                                                     redis_sync, make_topic)
    assert relay_a.run_once() == 0 and relay_a.owned_shards() == []
    assert outbox_length(redis_sync, layout) == 20 and shipped_ids(settings, topic, 0) == []
    drain_with(takeover.relay_b, redis_sync, layout)
    assert shipped_ids(settings, topic, 20) == expected          # once each, in order


async def test_a_relay_that_lost_its_lease_after_sending_trims_nothing(settings, redis_async, redis_sync, make_topic):
    topic, layout, takeover, relay_a, expected = await taken_over_at("relay.after_produce", settings, redis_async,
                                                                     redis_sync, make_topic)
    assert relay_a.run_once() == 0                               # shipped, but not its to trim any more
    assert outbox_length(redis_sync, layout) == 20
    drain_with(takeover.relay_b, redis_sync, layout)
    shipped = shipped_ids(settings, topic, 40)
    assert shipped == expected + expected                         # at least once: duplicates, by event id
    assert list(dict.fromkeys(shipped)) == expected               # de-duplicated: each once, in order


def _add_entry(redis_sync, layout, shard, record):
    redis_sync.xadd(layout.stream(shard), {"event_id": record.event_id, "topic": record.topic, "key": record.key,
                                           "headers": encode_headers(record.headers), "value": record.value})


@pytest.mark.parametrize("gather_ms, rounds_expected", [(400, 1), (0, 2)])
def test_what_arrives_while_a_relay_gathers_ships_in_the_same_round(settings, redis_sync, make_topic, gather_ms,
                                                                   rounds_expected):
    """A relay that found an entry waits gather_ms for more before its Redis round trips and its
    Kafka request (issue 15): an entry written meanwhile goes in the same round, in order;
    without gathering it waits for the next round."""
    topic = make_topic("gather")
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", settings.outbox_shards)
    key = f"01234{uuid.uuid4().hex[:7]}-c"
    shard = layout.shard_of(key)
    first, first_record = envelope_record(topic, key, "first")
    second, second_record = envelope_record(topic, key, "second")
    relay = OutboxRelay(redis_sync, kafka_producer(settings.kafka_access("admin"), "test-relay"), layout,
                        owner=f"test-{uuid.uuid4().hex[:6]}", idle_block_ms=50, gather_ms=gather_ms)
    relay.owned_shards()
    _add_entry(redis_sync, layout, shard, first_record)
    reading = threading.Event()
    real_read = relay._read

    def read_and_signal(shards):
        answer = real_read(shards)
        reading.set()
        return answer
    relay._read = read_and_signal
    writer = threading.Thread(target=lambda: reading.wait(5) and _add_entry(redis_sync, layout, shard, second_record))
    writer.start()
    shipped_first_round = relay.run_once()
    writer.join()
    rounds = 1
    while redis_sync.xlen(layout.stream(shard)):
        relay.run_once()
        rounds += 1
    assert (shipped_first_round, rounds) == ((2, 1) if rounds_expected == 1 else (1, 2))
    shipped = [decode(r.value).event_id for r in read_topic(settings.kafka_access("admin"), topic, at_least=2)]
    assert shipped == [first.event_id, second.event_id]


async def test_a_round_over_several_shards_trims_each_it_still_holds_in_one_round_trip(settings, redis_async,
                                                                                     redis_sync, make_topic):
    """The trims of a round's shards go in one pipeline (issue 15); each is still fenced by its
    own lease: a shard taken over between the send and the trim keeps its entries for its new
    owner, the others are trimmed."""
    topic = make_topic("trim-all", partitions=1)
    layout = OutboxLayout(f"t{uuid.uuid4().hex[:8]}", 4)
    keys, shards = [], set()
    while len(shards) < 4:                       # one key per shard
        key = f"01234{uuid.uuid4().hex[:7]}-c"
        if layout.shard_of(key) not in shards:
            shards.add(layout.shard_of(key))
            keys.append(key)
    await write_events(redis_async, layout, topic, keys, per_key=5)
    taken = layout.shard_of(keys[2])
    later = {}

    def take_over(point):
        if point == "relay.after_produce" and "b" not in later:
            redis_sync.delete(layout.lease(taken))
            later["b"] = OutboxRelay(redis_sync, kafka_producer(settings.kafka_access("admin"), "relay-b"), layout,
                                     owner="relay-b")
            assert later["b"].owned_shards() == [taken]
    relay_a = OutboxRelay(redis_sync, kafka_producer(settings.kafka_access("admin"), "relay-a"), layout,
                          owner="relay-a", crash_point=take_over)
    pipelines = []
    real_pipeline = redis_sync.pipeline
    relay_a._redis = type("Counting", (), {"__getattr__": lambda self, name: getattr(redis_sync, name),
                                           "pipeline": lambda self, **kw: pipelines.append(kw) or real_pipeline(**kw)})()
    assert relay_a.run_once() == 15              # three shards' five entries each
    assert len(pipelines) == 2                   # the lease renewals, then the trims: one round trip each
    assert {s: redis_sync.xlen(layout.stream(s)) for s in range(4)} == {s: 5 if s == taken else 0 for s in range(4)}
    assert sorted(relay_a.owned_shards()) == sorted(set(range(4)) - {taken})
