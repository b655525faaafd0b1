"""Ships each service's outbox streams from Redis to Kafka.

At-least-once: an entry is deleted only after Kafka acknowledged it (acks=all, idempotent
producer), so a relay that dies in between sends it again and consumers de-duplicate on
the event id. Order is kept per shard, hence per key. A relay holds a lease per shard,
so that replicas of the relay take over from each other instead of racing."""
from __future__ import annotations

import argparse
import signal
import socket
import threading
import time

import redis
import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from services.common.kafka_security import kwargs_of
from services.common import metrics
from services.common.config import CommonSettings
from services.common.faults import CrashPoints
from services.common.liveness import Heartbeat, heartbeat_path
from services.common.logging import configure_logging, load_mask_key
from services.common.outbox import OutboxLayout, decode_headers
from services.common.scripts import lua

log = structlog.get_logger("outbox.relay")
MEASURE_EVERY_SECONDS = 5.0   # how often the outbox gauges are refreshed

# How long a relay waits after its first entry for more (EPRX_RELAY_GATHER_MS overrides it). A
# round costs about the same for one entry as for hundreds, and under light load a round per
# entry is most of a relay's CPU (issue 15). The prescribing relay carries the issues a pharmacy
# waits for (issue to visible at a pharmacy < 100 ms at p99); the pharmacy relay carries sales to
# the insurer (sale to adjudicated < 500 ms) and audit records, the insurance relay the
# agency's and the pharmacies' events: they can wait longer.
GATHER_MS = {"prescribing": 10, "pharmacy": 30, "insurance": 30}

# Failures no retry can cure: the entry goes to the shard's dead stream and the shard goes on.
PERMANENT = (MessageSizeTooLargeError, RecordListTooLargeError, KeyError, UnicodeDecodeError, ValueError)


def kafka_producer(bootstrap, client_id: str) -> KafkaProducer:
    """`bootstrap`: the service principal's KafkaAccess (or a bare bootstrap, plaintext)."""
    return KafkaProducer(client_id=client_id, acks="all", **kwargs_of(bootstrap),
                         enable_idempotence=True, max_in_flight_requests_per_connection=1,
                         linger_ms=2, retries=2**31 - 1, delivery_timeout_ms=120_000,
                         # kafka-python's own sensors (rates and sizes per record and per request,
                         # never read here: the relay exports its own Prometheus metrics) were 12%
                         # of a relay's CPU under load (issue 15's profile)
                         metrics_enabled=False)


class OutboxRelay:
    def __init__(self, redis_client: redis.Redis, producer: KafkaProducer, layout: OutboxLayout, *,
                 owner: str, batch_size: int = 500, lease_ms: int = 15_000, idle_block_ms: int = 250,
                 crash_point: CrashPoints | None = None, heartbeat: Heartbeat | None = None, replicas: int = 0,
                 gather_ms: int = 0):
        self._redis = redis_client
        self._cluster = isinstance(redis_client, redis.RedisCluster)
        self._replicas = replicas
        self._producer = producer
        self._layout = layout
        self._owner = owner
        self._batch = batch_size
        self._lease_ms = lease_ms
        self._block_ms = idle_block_ms
        self._gather_s = gather_ms / 1000
        self._lease = redis_client.register_script(lua(__file__, "lease_renew_or_take"))
        self._release = redis_client.register_script(lua(__file__, "lease_release"))
        self._trim = redis_client.register_script(lua(__file__, "trim_if_held"))
        self._crash_point = crash_point or CrashPoints()
        self._heartbeat = heartbeat
        self._owned: list[int] = []
        self._shard_of_stream = {layout.stream(s): s for s in range(layout.shards)}
        self._renew_at = 0.0

    def owned_shards(self) -> list[int]:
        """Takes or renews the shard leases, a third of a lease's life before it ends."""
        if time.monotonic() >= self._renew_at:
            self._owned = [s for s in range(self._layout.shards)
                           if self._lease(keys=[self._layout.lease(s)], args=[self._owner, self._lease_ms])]
            self._renew_at = time.monotonic() + self._lease_ms / 3000
        return self._owned

    def _by_node(self, shards: list[int]) -> dict:
        """Redis Cluster: the shards grouped by the node that owns their slot, with its client."""
        groups: dict = {}
        for shard in shards:
            node = self._redis.get_node_from_key(self._layout.stream(shard))
            groups.setdefault(node.name, (self._redis.get_redis_connection(node), []))[1].append(shard)
        return groups

    def _read(self, shards: list[int]) -> dict[str, list]:
        """Every owned stream's oldest entries in one call; waits a little when all are empty.
        On Redis Cluster: one round trip per node, each stream read on the node that owns it."""
        if self._cluster:
            reply = {}
            for client, owned in self._by_node(shards).values():
                with client.pipeline(transaction=False) as pipe:
                    for shard in owned:
                        pipe.xread({self._layout.stream(shard): "0-0"}, count=self._batch)
                    for answer in pipe.execute():
                        reply.update(self._entries(answer))
            if not reply:
                time.sleep(self._block_ms / 1000)
            return reply
        reply = self._redis.xread({self._layout.stream(s): "0-0" for s in shards}, count=self._batch,
                                  block=self._block_ms)
        return self._entries(reply)

    @staticmethod
    def _entries(reply) -> dict[str, list]:
        if not reply:
            return {}
        if isinstance(reply, dict):  # RESP3
            return {k.decode(): v[0] for k, v in reply.items() if v and v[0]}
        return {k.decode(): v for k, v in reply if v}  # RESP2

    def measure(self) -> None:
        """Depth and age of the oldest entry of every shard (what an operator alerts on)."""
        now_ms = time.time() * 1000
        with self._redis.pipeline(transaction=False) as pipe:
            for shard in range(self._layout.shards):
                pipe.xlen(self._layout.stream(shard))
                pipe.xrange(self._layout.stream(shard), count=1)
            replies = pipe.execute()
        for shard in range(self._layout.shards):
            depth, oldest = replies[2 * shard], replies[2 * shard + 1]
            labels = (self._layout.service, str(shard))
            metrics.OUTBOX_DEPTH.labels(*labels).set(depth)
            entry_id = oldest[0][0] if oldest else None
            age = (now_ms - int(entry_id.split(b"-")[0] if isinstance(entry_id, bytes) else entry_id.split("-")[0])
                   ) / 1000 if entry_id else 0.0
            metrics.OUTBOX_AGE.labels(*labels).set(max(age, 0.0))

    def run_once(self) -> int:
        shards = self.owned_shards()
        if not shards:
            time.sleep(self._block_ms / 1000)
            return 0
        batches = self._read(shards)
        if not batches:
            return 0
        if self._gather_s and sum(map(len, batches.values())) < self._batch:
            # A round costs the same Redis round trips and Kafka request for one entry as for
            # hundreds: what arrives in the next few milliseconds goes with it. Streams are read
            # from their start, so the second read holds the first one's entries and the newer.
            time.sleep(self._gather_s)
            batches = self._read(shards) or batches
        self._crash_point("relay.before_produce")
        # Fencing: what was read is shipped only if the lease is still ours now (a relay paused
        # between its read and its send finds it taken and ships nothing), and trimmed only if
        # it is still ours in the same step as the trim (trim_if_held.lua).
        held = self._still_held([self._shard_of_stream[stream] for stream in batches])
        batches = {stream: entries for stream, entries in batches.items() if self._shard_of_stream[stream] in held}
        pending: dict[str, list] = {}
        dead: dict[str, list] = {}
        for stream, entries in batches.items():
            pending[stream] = []
            for entry_id, fields in entries:
                try:
                    future = self._producer.send(fields[b"topic"].decode(), key=fields[b"key"], value=fields[b"value"],
                                                 headers=decode_headers(fields[b"headers"]))
                except PERMANENT as exc:
                    dead.setdefault(stream, []).append((entry_id, fields, exc))
                    continue
                pending[stream].append((entry_id, fields, future))
        self._producer.flush(timeout=60)
        acknowledged: dict[str, list] = {}
        for stream, sent in pending.items():
            acknowledged[stream] = []
            for entry_id, fields, future in sent:
                if not future.succeeded() and isinstance(future.exception, PERMANENT):
                    dead.setdefault(stream, []).append((entry_id, fields, future.exception))
                    continue
                if not future.succeeded():
                    log.error("outbox.send_failed", stream=stream, event_id=fields.get(b"event_id", b"?").decode(),
                              error=repr(future.exception))
                    break  # keep order: nothing after a failure in this stream is trimmed this round
                acknowledged[stream].append(entry_id)
        self._bury(dead)
        self._crash_point("relay.after_produce")
        trimmed = 0
        ready = [(stream, ids) for stream, ids in acknowledged.items() if ids]
        for (stream, ids), removed in zip(ready, self._trim_all(ready)):
            shard = self._shard_of_stream[stream]
            if removed < 0:
                log.warning("outbox.lease_lost", shard=shard, shipped_not_trimmed=len(ids))
                self._owned = [s for s in self._owned if s != shard]
                continue
            trimmed += len(ids)
        return trimmed

    def _trim_all(self, ready: list[tuple[str, list]]) -> list[int]:
        """Trims what Kafka acknowledged from each stream, if its lease is still ours: one round
        trip for every shard of the round (one per shard on a Cluster, where shards live apart)."""
        calls = [([self._layout.lease(self._shard_of_stream[stream]), stream], [self._owner, *ids])
                 for stream, ids in ready]
        if self._cluster or len(calls) < 2:
            return [self._trim(keys=keys, args=args) for keys, args in calls]
        with self._redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                self._trim(keys=keys, args=args, client=pipe)
            return pipe.execute()

    def _still_held(self, shards: list[int]) -> set[int]:
        """The shards whose lease the caller holds now (renewed), of those it read. With replicas
        to wait for (Redis Cluster), only the shards whose node's replica confirmed the renewal:
        the entries read came before it in the master's replication stream, so a failover cannot
        take back an entry the relay has shipped."""
        if self._cluster:
            held = set()
            for client, owned in self._by_node(shards).values():
                with client.pipeline(transaction=False) as pipe:   # one connection: WAIT covers the renewals
                    for shard in owned:
                        self._lease(keys=[self._layout.lease(shard)], args=[self._owner, self._lease_ms], client=pipe)
                    if self._replicas:
                        pipe.execute_command("WAIT", self._replicas, 1000)
                    answers = pipe.execute()
                if self._replicas and answers[-1] < self._replicas:
                    log.warning("outbox.not_replicated", shards=owned)
                    continue
                held |= {shard for shard, mine in zip(owned, answers) if mine}
        else:
            with self._redis.pipeline(transaction=False) as pipe:   # one round trip for every shard read
                for shard in shards:
                    self._lease(keys=[self._layout.lease(shard)], args=[self._owner, self._lease_ms], client=pipe)
                answers = pipe.execute()
            held = {shard for shard, mine in zip(shards, answers) if mine}
        lost = set(shards) - held
        if lost:
            log.warning("outbox.lease_lost", shards=sorted(lost), shipped=0)
            self._owned = [s for s in self._owned if s not in lost]
        return held

    def _bury(self, dead: dict[str, list]) -> None:
        """Moves entries Kafka can never take to the shard's dead stream, atomically per entry."""
        for stream, entries in dead.items():
            dead_stream = self._layout.dead(self._shard_of_stream[stream])
            for entry_id, fields, error in entries:
                client = (self._redis.get_redis_connection(self._redis.get_node_from_key(stream)) if self._cluster
                          else self._redis)
                with client.pipeline(transaction=True) as pipe:
                    pipe.xadd(dead_stream, {**fields, b"dead_reason": f"{type(error).__name__}: {error}"[:500],
                                            b"dead_from": entry_id})
                    pipe.xdel(stream, entry_id)
                    pipe.execute()
                metrics.OUTBOX_DEAD.labels(self._layout.service).inc()
                log.error("outbox.entry_dead", stream=stream, entry=entry_id.decode() if isinstance(entry_id, bytes)
                          else entry_id, event_id=fields.get(b"event_id", b"?").decode(errors="replace"),
                          reason=type(error).__name__)

    def run(self, stop: threading.Event) -> None:
        log.info("outbox.relay_started", service=self._layout.service, shards=self._layout.shards,
                 owner=self._owner)
        total, last_report, last_measure = 0, time.monotonic(), 0.0
        while not stop.is_set():
            if self._heartbeat is not None:
                self._heartbeat.beat()
            if time.monotonic() - last_measure >= MEASURE_EVERY_SECONDS:
                try:
                    self.measure()
                except (redis.ConnectionError, redis.TimeoutError):
                    pass   # the round below reports Redis being down
                last_measure = time.monotonic()
            try:
                total += self.run_once()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("outbox.redis_unavailable", error=str(exc))
                stop.wait(1.0)
            except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterError,
                    redis.exceptions.MovedError, redis.exceptions.TryAgainError) as exc:
                log.warning("outbox.redis_cluster_changing", error=str(exc))   # a failover: learn the new masters
                self._redis.nodes_manager.initialize()
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


def build_relay(service: str, settings: CommonSettings, principal: str | None = None) -> OutboxRelay:
    """The relay of `service`'s outbox, as `principal` (default: the service's own Kafka
    principal and Redis user)."""
    # Stable per host and replica: a relay restarted after a crash takes its leases back at once.
    owner = f"{socket.gethostname()}:{service}:{settings.replica}"
    principal = principal or service
    client_class = redis.RedisCluster if settings.redis_cluster else redis.Redis
    client = client_class.from_url(settings.redis_url_for(principal), protocol=3,
                                   socket_timeout=settings.redis_socket_timeout,
                                   socket_connect_timeout=settings.redis_socket_timeout)
    return OutboxRelay(client, kafka_producer(settings.kafka_access(principal), f"{service}-relay"),
                       OutboxLayout(service, settings.outbox_shards), owner=owner,
                       crash_point=CrashPoints(settings.crash_at),
                       heartbeat=Heartbeat(heartbeat_path(settings, f"{service}-relay")),
                       replicas=settings.redis_replicas_to_wait,
                       gather_ms=GATHER_MS.get(service, 10) if settings.relay_gather_ms is None
                       else settings.relay_gather_ms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Ship a service's outbox from Redis to Kafka")
    parser.add_argument("service")
    parser.add_argument("--principal", default=None,
                        help="the Kafka principal and Redis user to act as (default: the service's own)")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    configure_logging(f"{args.service}-relay", fmt=settings.log_format, level=settings.log_level,
                      mask_key=load_mask_key(settings.run_dir, settings.log_mask_key))
    metrics.serve(settings.metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    relay = build_relay(args.service, settings, args.principal)
    relay.run(stop)


if __name__ == "__main__":
    main()
