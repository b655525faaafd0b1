"""The outbox relay against the real Redis and Kafka, including SIGKILL at the worst moments."""
import signal
import subprocess
import uuid
from collections import defaultdict
from datetime import datetime, timezone

import pytest
from eprescription.events.v1 import events_pb2

from services.common.events import decode, new_envelope, payload_of, to_record
from services.common.outbox import OutboxLayout, OutboxScript
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
    return subprocess.Popen([python, "-m", "services.common.outbox_relay", keyspace], env=env,
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

    records = read_topic(settings.kafka_bootstrap, topic, at_least=60)
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
    for proc in relays:
        stop(proc)
    envelopes = [decode(r.value) for r in read_topic(settings.kafka_bootstrap, topic, at_least=200)]
    per_key = defaultdict(list)
    for env in envelopes:
        per_key[env.key].append(env.event_id)
    assert dict(per_key) == dict(written)  # exactly once each, in order, with no crash
