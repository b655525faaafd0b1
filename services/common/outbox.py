"""The transactional outbox on Redis.

A command's state change and its events are written by one Lua script, atomically: the
script checks its rules, applies the change and appends the events to an outbox stream.
The relay (outbox_relay.py) later ships each stream to Kafka and deletes only what Kafka
acknowledged. The outbox is split in shards; every key of one command shares the shard's
hash tag, so one script touches one Redis Cluster slot."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

from services.common.events import KafkaRecord

# Prepended to every script that writes events. The events travel at the end of ARGV as
# count, then (event_id, topic, key, headers, value) per event; the last ARGV is the
# index of the count. The script calls outbox_append(KEYS[n]) once its checks have passed.
LUA_PRELUDE = """
local OUTBOX_AT = tonumber(ARGV[#ARGV])
local function outbox_append(stream)
  local n = tonumber(ARGV[OUTBOX_AT])
  for i = 0, n - 1 do
    local b = OUTBOX_AT + 1 + i * 5
    redis.call('XADD', stream, '*', 'event_id', ARGV[b], 'topic', ARGV[b + 1],
               'key', ARGV[b + 2], 'headers', ARGV[b + 3], 'value', ARGV[b + 4])
  end
  return n
end
"""

_HEADER_SEP = "\x1f"
_PAIR_SEP = "\x1e"


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    return _PAIR_SEP.join(f"{k}{_HEADER_SEP}{v.decode()}" for k, v in headers)


def decode_headers(raw: bytes | str) -> list[tuple[str, bytes]]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not text:
        return []
    return [(k, v.encode()) for k, v in (pair.split(_HEADER_SEP, 1) for pair in text.split(_PAIR_SEP))]


@dataclass(frozen=True)
class OutboxLayout:
    """Where a service's state and outbox live in Redis. `service` names the keyspace."""

    service: str
    shards: int

    def shard_of(self, partition_key: str) -> int:
        return zlib.crc32(partition_key.encode()) % self.shards

    def tag(self, shard: int) -> str:
        return "{" + f"{self.service}:s{shard:04d}" + "}"

    def key(self, shard: int, *parts: str) -> str:
        """A state key in the shard's slot, e.g. key(3, 'ledger', code)."""
        return ":".join([self.tag(shard), *parts])

    def stream(self, shard: int) -> str:
        return f"{self.tag(shard)}:outbox"

    def lease(self, shard: int) -> str:
        return f"{self.tag(shard)}:outbox-lease"

    def dead(self, shard: int) -> str:
        """Entries the relay could never produce, with the reason, out of the shard's way."""
        return f"{self.tag(shard)}:outbox-dead"

    def streams(self) -> list[str]:
        return [self.stream(s) for s in range(self.shards)]


# Kafka refuses a record over the topic's max.message.bytes (1 MiB by default): an event that
# could never ship must not enter the outbox, where it would stop its shard.
MAX_EVENT_BYTES = 512 * 1024


class EventTooLarge(ValueError):
    """A command would publish an event larger than MAX_EVENT_BYTES; nothing was written."""


def outbox_argv(args: Sequence[str | bytes | int], records: Sequence[KafkaRecord]) -> list:
    for r in records:
        size = len(r.value) + len(r.key) + sum(len(k) + len(v) for k, v in r.headers)
        if size > MAX_EVENT_BYTES:
            raise EventTooLarge(f"the request makes a {r.topic} event of {size} bytes; at most {MAX_EVENT_BYTES}")
    argv: list = list(args)
    at = len(argv) + 1  # Lua is 1-based
    argv.append(len(records))
    for r in records:
        argv += [r.event_id, r.topic, r.key, encode_headers(r.headers), r.value]
    argv.append(at)
    return argv


class OutboxScript:
    """A Lua script with the outbox prelude, run with its own args and the events to append."""

    def __init__(self, redis, body: str):
        from services.common.redis_client import replicas_to_wait
        self._redis = redis
        self._script = redis.register_script(LUA_PRELUDE + body)
        self._replicas = replicas_to_wait(redis)

    async def __call__(self, keys: Sequence[str], args: Sequence[str | bytes | int],
                       records: Sequence[KafkaRecord]):
        """The script's answer; with replicas to wait for (Redis Cluster), only once a replica
        holds what it wrote (redis_client.replicated_script)."""
        argv = outbox_argv(args, records)
        if self._replicas:
            from services.common.redis_client import replicated_script
            return await replicated_script(self._redis, self._script, list(keys), argv, self._replicas)
        return await self._script(keys=list(keys), args=argv)

