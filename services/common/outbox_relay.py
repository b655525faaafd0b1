"""Ships each service's outbox streams from Redis to Kafka.

At-least-once: an entry is deleted only after Kafka acknowledged it (acks=all, idempotent
producer), so a relay that dies in between sends it again and consumers de-duplicate on
the event id. Order is kept per shard, hence per key. A relay holds a lease per shard,
so that replicas of the relay take over from each other instead of racing."""
from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time

import redis
import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.common.config import CommonSettings
from services.common.faults import crash_point
from services.common.logging import configure_logging, load_mask_key
from services.common.outbox import OutboxLayout, decode_headers

log = structlog.get_logger("outbox.relay")

_RENEW_OR_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def kafka_producer(bootstrap: str, client_id: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all",
                         enable_idempotence=True, max_in_flight_requests_per_connection=1,
                         linger_ms=2, retries=2**31 - 1, delivery_timeout_ms=120_000)


class OutboxRelay:
    def __init__(self, redis_client: redis.Redis, producer: KafkaProducer, layout: OutboxLayout, *,
                 owner: str, batch_size: int = 500, lease_ms: int = 15_000, idle_block_ms: int = 250):
        self._redis = redis_client
        self._producer = producer
        self._layout = layout
        self._owner = owner
        self._batch = batch_size
        self._lease_ms = lease_ms
        self._block_ms = idle_block_ms
        self._lease = redis_client.register_script(_RENEW_OR_TAKE)
        self._release = redis_client.register_script(_RELEASE)
        self._last_seen = {layout.stream(s): "0-0" for s in range(layout.shards)}

    def owned_shards(self) -> list[int]:
        return [s for s in range(self._layout.shards)
                if self._lease(keys=[self._layout.lease(s)], args=[self._owner, self._lease_ms])]

    def ship_shard(self, shard: int) -> int:
        stream = self._layout.stream(shard)
        entries = self._redis.xrange(stream, count=self._batch)
        if not entries:
            return 0
        crash_point("relay.before_produce")
        pending = []
        for entry_id, fields in entries:
            future = self._producer.send(fields[b"topic"].decode(), key=fields[b"key"], value=fields[b"value"],
                                         headers=decode_headers(fields[b"headers"]))
            pending.append((entry_id, fields[b"event_id"], future))
        self._producer.flush(timeout=60)
        acknowledged = []
        for entry_id, event_id, future in pending:
            if not future.succeeded():
                log.error("outbox.send_failed", stream=stream, event_id=event_id.decode(),
                          error=repr(future.exception))
                break  # keep order: nothing after a failure is trimmed this round
            acknowledged.append(entry_id)
        crash_point("relay.after_produce")
        if acknowledged:
            self._redis.xdel(stream, *acknowledged)
            self._last_seen[stream] = acknowledged[-1].decode()
        return len(acknowledged)

    def run_once(self) -> int:
        shards = self.owned_shards()
        shipped = sum(self.ship_shard(s) for s in shards)
        if shipped == 0 and shards:
            streams = {self._layout.stream(s): self._last_seen[self._layout.stream(s)] for s in shards}
            self._redis.xread(streams, count=1, block=self._block_ms)
        elif not shards:
            time.sleep(self._block_ms / 1000)
        return shipped

    def run(self, stop: threading.Event) -> None:
        log.info("outbox.relay_started", service=self._layout.service, shards=self._layout.shards,
                 owner=self._owner)
        total, last_report = 0, time.monotonic()
        while not stop.is_set():
            try:
                total += self.run_once()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("outbox.redis_unavailable", error=str(exc))
                stop.wait(1.0)
            except KafkaError as exc:
                log.warning("outbox.kafka_unavailable", error=repr(exc))
                stop.wait(1.0)
            if time.monotonic() - last_report >= 10 and total:
                log.info("outbox.shipped", count=total)
                total, last_report = 0, time.monotonic()
        self._producer.flush(timeout=30)
        for shard in range(self._layout.shards):
            self._release(keys=[self._layout.lease(shard)], args=[self._owner])
        log.info("outbox.relay_stopped", shipped_since_last_report=total)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Ship a service's outbox from Redis to Kafka")
    parser.add_argument("service")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    configure_logging(f"{args.service}-relay", fmt=settings.log_format, level=settings.log_level,
                      mask_key=load_mask_key(settings.run_dir, settings.log_mask_key))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Stable per host and replica: a relay restarted after a crash takes its leases back at once.
    owner = f"{socket.gethostname()}:{args.service}:{os.environ.get('EPRX_REPLICA', '0')}"
    relay = OutboxRelay(redis.Redis.from_url(settings.redis_url, protocol=3),
                        kafka_producer(settings.kafka_bootstrap, f"{args.service}-relay"),
                        OutboxLayout(args.service, settings.outbox_shards), owner=owner)
    relay.run(stop)


if __name__ == "__main__":
    main()
