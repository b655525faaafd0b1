from services.common.events import KafkaRecord
from services.common.outbox import OutboxLayout, decode_headers, encode_headers, outbox_argv


def test_a_key_always_lands_in_the_same_shard_and_every_shard_is_used():
    layout = OutboxLayout("pharmacy", 8)
    keys = [f"01234{i:07d}-c" for i in range(2000)]
    shards = [layout.shard_of(k) for k in keys]
    assert shards == [layout.shard_of(k) for k in keys]
    assert set(shards) == set(range(8))


def test_state_and_outbox_of_a_shard_share_one_hash_tag():
    layout = OutboxLayout("pharmacy", 8)
    tag = layout.tag(3)
    for key in (layout.key(3, "ledger", "x"), layout.stream(3), layout.lease(3)):
        assert key[key.index("{"):key.index("}") + 1] == tag
    assert layout.tag(3) != layout.tag(4)


def test_headers_survive_the_round_trip():
    headers = [("event-type", b"MedicationDispensed"), ("correlation-id", b"abc-1")]
    assert decode_headers(encode_headers(headers)) == headers
    assert decode_headers(b"") == []


def test_events_follow_the_script_args_and_the_last_arg_points_at_them():
    records = [KafkaRecord("t", b"k", b"v1", (("a", b"1"),), "e1"),
               KafkaRecord("t", b"k", b"v2", (), "e2")]
    argv = outbox_argv(["arg1", 7], records)
    at = argv[-1]
    assert argv[:2] == ["arg1", 7]
    assert argv[at - 1] == 2  # Lua's ARGV is 1-based
    assert argv[at:at + 5] == ["e1", "t", b"k", "a\x1f1", b"v1"]
    assert argv[at + 5:at + 10] == ["e2", "t", b"k", "", b"v2"]
