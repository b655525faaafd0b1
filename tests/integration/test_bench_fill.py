"""The benchmark's scale fill (bench/fill.py) and key inventory (bench/redis_inventory.py) on a
real Redis: copies keep each key's kind, size, encoding, slot and time to live, skip reference
data and outboxes, and stop at the count asked. A database of its own (13) on the test Redis,
so the scan sees only this test's keys."""
import pytest
import redis

from bench.fill import Template, count_prescriptions, fill
from bench.redis_inventory import inventory, kind_of

DB = 13


@pytest.fixture
def client(settings):
    url = settings.redis_url_for("admin").rsplit("/", 1)
    base = url[0] if url[-1].isdigit() else settings.redis_url_for("admin")
    c = redis.Redis.from_url(f"{base}/{DB}", socket_timeout=10)
    c.flushdb()
    yield c
    c.flushdb()


def seed(c, n: int) -> None:
    for i in range(n):
        tag = "{prescribing:s%04d}" % (i % 8)
        c.set(f"{tag}:rx:RX{i:08d}", b"x" * 300)
        c.hset("{pharmacy:s%04d}:ledger:RX%08d" % (i % 8, i), mapping={"r:1": 14, "r:2": 12, "doc": b"y" * 200})
        c.set(f"{tag}:dedup:{i}", b"1", ex=3600)
    c.hset("insurance:member:DN4010000000001", mapping={"doc": b"m" * 500})
    c.set("insurance:idx:cccd:001", b"DN4010000000001")
    c.xadd("{pharmacy:s0001}:outbox", {"e": b"event"})


def test_kinds_name_the_service_and_the_first_part_after_the_shard():
    assert kind_of("{pharmacy:s0003}:ledger:RX1") == "pharmacy:ledger"
    assert kind_of("{prescribing:s0000}:outbox") == "prescribing:outbox"
    assert kind_of("insurance:member:DN4") == "insurance:member"
    assert kind_of("{insurance}:x") == "insurance:x"


def test_fill_copies_per_prescription_keys_until_the_count_and_nothing_else(client):
    seed(client, 20)
    template = Template.take(client)
    assert template.prescriptions == 20
    assert {kind_of(k.decode()) for k, _, _ in template.entries} == {"prescribing:rx", "pharmacy:ledger",
                                                                     "prescribing:dedup"}
    before = inventory(client)
    next_copy = fill(client, template, 95)
    assert next_copy == 5                                   # 20 real + copies 1-4 of 20 = 100 >= 95
    assert count_prescriptions(client) == 100
    after = inventory(client)
    for kind in ("prescribing:rx", "pharmacy:ledger", "prescribing:dedup"):
        assert after[kind]["keys"] == 5 * before[kind]["keys"]
        assert after[kind]["bytes"] >= 5 * before[kind]["bytes"]          # names are a few bytes longer
        assert after[kind]["bytes"] <= 5 * before[kind]["bytes"] + 4 * before[kind]["keys"] * 16
    assert after["prescribing:dedup"]["expiring"] == after["prescribing:dedup"]["keys"]
    for kind in ("insurance:member", "insurance:idx", "pharmacy:outbox"):
        assert after[kind] == before[kind]
    copy = b"{pharmacy:s0003}:ledger:RX00000003:fill2"
    assert client.hgetall(copy) == client.hgetall(b"{pharmacy:s0003}:ledger:RX00000003")
    assert client.object("encoding", copy) == client.object("encoding", b"{pharmacy:s0003}:ledger:RX00000003")


def test_a_second_fill_goes_on_from_the_last_copy_and_a_met_count_adds_nothing(client):
    seed(client, 10)
    template = Template.take(client)
    next_copy = fill(client, template, 30)
    assert fill(client, template, 30, first_copy=next_copy) == next_copy
    assert fill(client, template, 50, first_copy=next_copy) == next_copy + 2
    assert count_prescriptions(client) == 50


def test_a_template_without_prescriptions_is_refused(client):
    client.set("insurance:member:x", b"1")
    with pytest.raises(ValueError):
        fill(client, Template.take(client), 10)
