"""The Faust kit: an app factory with the platform's settings, source topics of raw bytes,
and the envelope processor every agent goes through: decode, skip what was already seen,
call the handler, and send what cannot be processed to the dead-letter topic."""
from __future__ import annotations

import asyncio
import time
import traceback
import weakref
from collections import OrderedDict, deque
from typing import Any, Awaitable, Callable, Protocol

import faust
import faust.streams as faust_streams
import faust.transport.consumer as faust_consumer
import faust.transport.drivers.aiokafka as faust_aiokafka
import faust.worker as faust_worker
import mode.utils.queues as mode_queues
import redis.exceptions
import structlog
from aiokafka.partitioner import murmur2

from services.common import metrics
from services.common.config import CommonSettings
from services.common.events import EventDecodeError, decode
from services.common.liveness import Heartbeat, heartbeat_path
from services.common.logging import configure_logging, correlation_id, faust_logging_config, load_mask_key
from services.common.redis_client import CLUSTER_TRANSIENT
from services.common.topics import dlq

log = structlog.get_logger("streams")

Handler = Callable[[Any], Awaitable[None]]  # takes a decoded EventEnvelope
HEARTBEAT_SECONDS = 5.0   # a worker's liveness file is touched this often while its loop turns


def create_app(name: str, settings: CommonSettings, *, principal: str | None = None, fetch_wait_ms: int = 10,
               **overrides: Any) -> faust.App:
    """A Faust app for service `name`, on Kafka as `principal` (default: the service's own).
    `fetch_wait_ms`: how long an event may wait at the broker to come with others, from the
    latency the worker's events are allowed (EPRX_FETCH_WAIT_MS overrides it)."""
    brokers = [f"kafka://{hostport}" for hostport in settings.kafka_bootstrap.split(",")]
    config: dict[str, Any] = dict(
        broker=brokers,
        # Tables on local RocksDB: a restarted worker reads only the changelog written since
        # its last flush, not the whole of it; standby replicas keep a warm copy elsewhere.
        store=f"{settings.table_store}://",
        # faust-streaming's exactly_once mode has open correctness bugs: handlers are
        # idempotent and de-duplicate on the event id instead.
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        # One folder per replica: RocksDB locks its files, and a replica's disk state is its own.
        datadir=str(settings.run_dir / "faust" / "{conf.name}" / f"replica-{settings.replica}"),
        broker_commit_interval=1.0,
        # A worker that died is replaced within seconds, not after the 60 s default.
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
        table_standby_replicas=settings.table_standby_replicas,
        # Records sent within a few milliseconds share one produce request: the broker's CPU is
        # mostly per request (issue 15's profile), and an event waits at most this long.
        producer_linger=settings.producer_linger_ms / 1000,
    )
    # The worker's own logging set-up (at start) installs the masked handler, nothing else.
    logged_as = name if settings.combined_processes else f"{name}-worker"   # one process per service: its name
    config["logging_config"] = faust_logging_config(logged_as, settings.log_format,
                                                    load_mask_key(settings.run_dir, settings.log_mask_key))
    credentials = settings.kafka_access(principal or name).faust_credentials()   # SASL_SSL as the service's principal
    if credentials is not None:
        config["broker_credentials"] = credentials
    config.update(overrides)
    _FETCH.update(min_bytes=settings.fetch_min_bytes,
                  max_wait_ms=fetch_wait_ms if settings.fetch_wait_ms is None else settings.fetch_wait_ms)
    (settings.run_dir / "faust" / f"eprx-{name}" / f"replica-{settings.replica}").mkdir(parents=True, exist_ok=True)
    app = faust.App(f"eprx-{name}", **config)

    # Beats from the start; Faust's timers run once the worker has recovered its tables, so a
    # probe must allow for that recovery (a startup allowance), not only for the interval.
    heartbeat = Heartbeat(heartbeat_path(settings, f"{name}-worker"))
    heartbeat.beat()

    @app.timer(interval=HEARTBEAT_SECONDS)
    async def _beat() -> None:
        heartbeat.beat()
        measure_lag(app)

    started = time.monotonic()

    @app.task
    async def _report_recovery() -> None:
        """When the tables are recovered (the worker starts processing), and how long it took."""
        await app.tables.recovery.completed.wait()
        seconds = time.monotonic() - started
        metrics.TABLES_RECOVERED_SECONDS.labels(app.conf.id).set(seconds)
        log.info("worker.tables_recovered", app=app.conf.id, seconds=round(seconds, 3), store=settings.table_store,
                 loop=type(asyncio.get_running_loop()).__module__.split(".")[0])

    if settings.metrics_port:
        @app.task
        async def _metrics() -> None:
            metrics.serve(settings.metrics_port)

    @app.on_configured.connect
    def _configure_logging(app, conf, **kwargs) -> None:
        configure_logging(logged_as, fmt=settings.log_format, level=settings.log_level,
                          mask_key=load_mask_key(settings.run_dir, settings.log_mask_key))

    return app


def measure_lag(app: faust.App) -> None:
    """Messages between each assigned partition's end and what this worker has read."""
    consumer = app.consumer
    try:
        assigned = consumer.assignment()
    except Exception:  # no consumer yet (recovering, rebalancing): nothing to say
        return
    read = getattr(consumer, "_read_offset", {})
    for tp in assigned:
        try:
            end = consumer.highwater(tp)
        except Exception:
            continue
        position = read.get(tp)
        if end is None:
            continue
        lag = end - (position + 1 if position is not None else 0)
        metrics.CONSUMER_LAG.labels(app.conf.id, tp.topic, str(tp.partition)).set(max(lag, 0))


def source_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic the project created (services/common/topics.py), read as raw bytes."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", allow_empty=True)


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, as in every client)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def as_current_event(event: faust.EventT) -> None:
    """Makes `event` the one Faust's tables file their reads and writes under, in this task's
    context only (faust.streams keeps it in a context variable; it has no public setter)."""
    faust_streams._current_event.set(weakref.ref(event))


class InOrderAcks:
    """Acknowledges the events of a batch handled out of order (members in parallel) in
    their partition's order: each event once it and every earlier event of its partition in
    the batch are handled.

    Faust commits up to the first gap in a partition's acknowledged offsets, but it accepts
    one missing offset right after the committed one (its check is `min(acked) - committed
    > 1`): with offset 7 still being handled and 8 acknowledged, it commits 9. A crash before 7
    is handled then loses 7 for good (seen in the fault runs: claims never adjudicated after a
    SIGKILL of the insurance worker). Acknowledging in order leaves no such hole."""

    def __init__(self, stream, events) -> None:
        self._stream = stream
        self._waiting: dict[Any, deque] = {}
        for event in events:
            self._waiting.setdefault(event.message.tp, deque()).append(event)
        self._handled: set[int] = set()

    async def handled(self, event) -> None:
        self._handled.add(id(event))
        waiting = self._waiting[event.message.tp]
        while waiting and id(waiting[0]) in self._handled:
            done = waiting.popleft()
            self._handled.discard(id(done))
            await self._stream.ack(done)


_faust_ack = faust_consumer.Consumer.ack


def _ack_only_what_reached_an_agent(self, message) -> bool:
    """Faust's Consumer.ack, except for a message no agent was given: a stream skips (and
    acknowledges) the messages it holds when a rebalance starts, after the revocation has
    forgotten the partition's committed offset, so that acknowledgement counts and a commit
    could pass over messages nobody handled. They are fetched again from the committed offset
    after the rebalance; only those count. A message reaches an agent tracked (faust.streams)."""
    if not message.tracked:
        return False
    return _faust_ack(self, message)


faust_consumer.Consumer.ack = _ack_only_what_reached_an_agent

_faust_resume = mode_queues.FlowControlEvent.resume


def _resume_without_dropping_what_flows(self) -> None:
    """FlowControlEvent.resume, except when the flow is already on: then it does nothing.

    Resuming empties every agent's queue (meant for messages left from before a rebalance).
    Faust's recovery ends by resuming the stream partitions, waiting for the seek to the
    committed offsets, and resuming the flow, which is already on: the messages fetched during
    that wait are emptied from the queues after the consumer noted them as read, so they are not
    fetched again; none is acknowledged, but Faust's commit passes over one missing offset
    after the committed one (see InOrderAcks), so the first of them was lost for good (seen in
    the fault runs: one claim per partition never adjudicated after a restart of the worker)."""
    if self.is_active():
        return
    _faust_resume(self)


mode_queues.FlowControlEvent.resume = _resume_without_dropping_what_flows


class KeyPartitionedTable(faust.Table):
    """A table whose changelog record for a key goes to the partition Kafka's default
    partitioner gives that key, not to the partition of whatever event is current. Keyed
    like its source topic (same raw key bytes, same partition count), each key's state lives
    beside the key's events however the agent batches or interleaves them."""

    def partition_for_key(self, key) -> int:
        return kafka_partition(key, self.partitions)


def keyed_table(app: faust.App, name: str, partitions: int, **options: Any) -> KeyPartitionedTable:
    """A KeyPartitionedTable of raw-bytes keys (the source topic's keys as they are)."""
    return app.tables.add(KeyPartitionedTable(app, name=name, partitions=partitions, key_type=bytes,
                                              beacon=app.tables.beacon, **options))


# How a worker's consumer fetches (create_app sets it from the settings). Faust asks for any
# record at all (aiokafka's fetch_min_bytes 1) and lets the broker hold a fetch 1.5 s: under
# load every fetch brings back the one or two records that arrived since the last, and the
# broker's CPU goes mostly on requests (issue 15's profile). Waiting up to fetch_wait_ms for
# fetch_min_bytes makes fewer, fuller fetches; an event waits at most fetch_wait_ms more.
_FETCH = {"min_bytes": 1, "max_wait_ms": 1500}
_faust_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _worker_consumer_fetching_in_batches(self, transport):
    consumer = _faust_worker_consumer(self, transport)
    consumer._fetch_min_bytes = _FETCH["min_bytes"]      # read by AIOKafkaConsumer.start (its Fetcher)
    consumer._fetch_max_wait_ms = _FETCH["max_wait_ms"]
    return consumer


faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _worker_consumer_fetching_in_batches


def _no_spinner_handler(self, logger, level) -> None:
    """Faust's Worker, at any level from WARN up, puts a terminal spinner's handler on the root
    logger and lowers the root logger to DEBUG so that every line turns the spinner: every
    debug call of aiokafka and Faust (several per request and per record) then builds a log
    record that the real handler throws away (issue 15's profile of the workers). Our workers
    have no terminal: no spinner handler, and the root logger keeps its level."""


faust_worker.Worker._setup_spinner_handler = _no_spinner_handler


# Where an event sits: (topic, partition, offset).
Position = tuple[str, int, int]


class Deduplicator(Protocol):
    """Remembers which event ids a consumer has fully handled.

    `seen` is true only for ids passed to `remember` before; `remember` is idempotent. The
    event's position, when given, lets a de-duplicator tell an event no one can have handled."""

    async def seen(self, event_id: str, position: Position | None = None) -> bool: ...

    async def remember(self, event_id: str, position: Position | None = None) -> None: ...


class RedisDeduplicator:
    """Event ids a consumer handled, kept in Redis for `ttl_seconds` (bounded in time): a
    restarted or rebalanced worker skips what any worker of its group already handled. One
    key per id, `{<service>:dedup:<consumer>:<id>}`: inside the service's ACL key patterns,
    and spread over every Redis Cluster slot instead of one hot one."""

    def __init__(self, redis, consumer: str, ttl_seconds: int = 3600, *, service: str | None = None):
        self._redis = redis
        self._prefix = "{" + f"{service or consumer.split('-')[0]}:dedup:{consumer}:"
        self._ttl = ttl_seconds

    def key(self, event_id: str) -> str:
        return f"{self._prefix}{event_id}}}"

    async def seen(self, event_id: str, position: Position | None = None) -> bool:
        return bool(await self._redis.exists(self.key(event_id)))

    async def remember(self, event_id: str, position: Position | None = None) -> None:
        await self._redis.set(self.key(event_id), b"1", ex=self._ttl)

    async def remember_all(self, event_ids: list[str]) -> None:
        """Several ids in one round trip (one key each: no transaction, a Cluster spreads them)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.set(self.key(event_id), b"1", ex=self._ttl)
            await pipe.execute()


class MemoryDeduplicator:
    """The most recent event ids of this process: it skips the redeliveries of a rebalance
    or a restart cheaply; handlers stay idempotent for whatever it no longer remembers."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    async def seen(self, event_id: str, position: Position | None = None) -> bool:
        return event_id in self._ids

    async def remember(self, event_id: str, position: Position | None = None) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class DurableDeduplicator:
    """Memory in front of Redis: bounded in memory (the recent ids) and in time (the Redis
    keys expire), and it survives a restart, which the memory alone does not.

    Redis is asked only about an event another process may have handled: one whose previous
    offset in its partition this process did not handle itself (the first events after a start
    or an assignment, and those after a duplicate or a gap). Reading a partition without a gap,
    an event at the next offset is one no earlier owner handled: the group's committed offset,
    where this process started, is past whatever an earlier owner committed. (An owner that
    handled events it never committed has them handled again here, as it would have after a
    crash: every handler is idempotent.) The ids it handles go to Redis in batches, at most
    `flush_after_s` later, for whoever reads the partition next; a crash before that leaves
    those few to be handled again, as a crash between handling and remembering always did.

    Issue 15's profile: an EXISTS and a SET per event were 13% of the prescribing worker."""

    def __init__(self, durable: RedisDeduplicator, capacity: int = 50_000, *, flush_after_s: float = 0.05,
                 max_pending: int = 1000) -> None:
        self._recent = MemoryDeduplicator(capacity)
        self._durable = durable
        self._handled_up_to: dict[tuple[str, int], int] = {}
        self._pending: dict[str, None] = {}
        self._flush_after_s, self._max_pending = flush_after_s, max_pending
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task] = set()

    async def seen(self, event_id: str, position: Position | None = None) -> bool:
        if await self._recent.seen(event_id) or event_id in self._pending:
            return True
        if position is not None and self._handled_up_to.get(position[:2]) == position[2] - 1:
            return False
        return await self._durable.seen(event_id)

    async def remember(self, event_id: str, position: Position | None = None) -> None:
        await self._recent.remember(event_id)
        if position is not None:
            self._handled_up_to[position[:2]] = position[2]
        self._pending[event_id] = None
        if len(self._pending) >= self._max_pending:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_after_s, self._flush_in_background)

    def forget_positions(self) -> None:
        """After partitions were taken away: the next event of each is asked about again."""
        self._handled_up_to.clear()

    def _flush_in_background(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._flush_or_retry())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_or_retry(self) -> None:
        try:
            await self.flush()
        except Exception as exc:   # Redis away: kept, tried again
            log.warning("dedup.flush_failed", pending=len(self._pending), error=repr(exc))
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(1.0, self._flush_in_background)

    async def flush(self) -> None:
        """Writes the handled ids not yet in Redis (also at a stop)."""
        ids = list(self._pending)
        if not ids:
            return
        await self._durable.remember_all(ids)
        for event_id in ids:
            self._pending.pop(event_id, None)


def durable_dedup(settings: CommonSettings, service: str, consumer: str) -> DurableDeduplicator:
    """The de-duplicator of a consumer with side effects, on the service's own Redis user."""
    from services.common.redis_client import connect
    return DurableDeduplicator(RedisDeduplicator(connect(settings, service), consumer, service=service,
                                                 ttl_seconds=settings.dedup_ttl_seconds))


class DeadLetters:
    """Sends a message that cannot be processed to `<topic>.dlq`, with why and from where."""

    def __init__(self, app: faust.App, consumer: str):
        self._app = app
        self._consumer = consumer
        self._topics: dict[str, faust.TopicT] = {}

    async def send(self, event: faust.EventT, error: BaseException) -> None:
        message = event.message
        name = dlq(message.topic)
        topic = self._topics.get(name) or self._topics.setdefault(name, source_topic(self._app, name))
        headers = list((event.headers or {}).items()) if isinstance(event.headers, dict) else list(event.headers or [])
        headers += [
            ("dlq-error", f"{type(error).__name__}: {error}"[:2000].encode()),
            ("dlq-trace", "".join(traceback.format_exception(error))[-4000:].encode()),
            ("dlq-source-topic", message.topic.encode()),
            ("dlq-source-partition", str(message.partition).encode()),
            ("dlq-source-offset", str(message.offset).encode()),
            ("dlq-consumer", self._consumer.encode()),
        ]
        delivery = await topic.send(key=message.key, value=message.value, headers=headers)
        await delivery  # the source offset is committed only after the DLQ holds the message
        metrics.DEAD_LETTERS.labels(self._consumer, message.topic).inc()
        log.warning("event.dead_lettered", topic=message.topic, partition=message.partition,
                    offset=message.offset, error=str(error)[:300])


# Failures of the infrastructure, not of the message: retried in place (keeping the
# partition's order) instead of dead-lettering a message that is fine.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, *CLUSTER_TRANSIENT,
)


class EnvelopeProcessor:
    def __init__(self, consumer: str, dedup: Deduplicator, dead_letters: DeadLetters, *,
                 transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS, max_backoff: float = 5.0):
        self.consumer = consumer
        self._dedup = dedup
        self._dead = dead_letters
        self._transient = transient
        self._max_backoff = max_backoff

    async def _retrying(self, step: Callable[[], Awaitable[Any]]) -> Any:
        backoff = 0.1
        while True:
            try:
                return await step()
            except self._transient as exc:
                log.warning("event.transient_failure", consumer=self.consumer, error=repr(exc),
                            retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def process(self, event: faust.EventT, handle: Handler) -> str:
        """Returns what happened: handled, duplicate or dead-lettered."""
        try:
            envelope = decode(event.value)
        except EventDecodeError as exc:
            await self._dead.send(event, exc)
            return "dead-lettered"
        token = correlation_id.set(envelope.correlation_id or None)
        try:
            message = getattr(event, "message", None)
            position = (message.topic, message.partition, message.offset) if message is not None else None
            if await self._retrying(lambda: self._dedup.seen(envelope.event_id, position)):
                return "duplicate"
            try:
                await self._retrying(lambda: handle(envelope))
            except Exception as exc:  # one bad message must not stop the stream
                await self._dead.send(event, exc)
                return "dead-lettered"
            await self._retrying(lambda: self._dedup.remember(envelope.event_id, position))
            return "handled"
        finally:
            correlation_id.reset(token)


async def process_in_order(app: faust.App, consumer: str, stream, handle: Handler, *,
                           dedup: Deduplicator | None = None,
                           dead_letters: Callable[[faust.App, str], DeadLetters] = DeadLetters) -> None:
    """Every event of an agent's stream through the envelope processor, one at a time in
    partition order, skipping what `dedup` says was handled (durable: see durable_dedup)."""
    dedup = dedup or MemoryDeduplicator()
    processor = EnvelopeProcessor(consumer, dedup, dead_letters(app, consumer))
    if isinstance(dedup, DurableDeduplicator):
        @app.on_partitions_revoked.connect
        async def _forget(app, revoked, **kwargs) -> None:
            dedup.forget_positions()
    # Acknowledged only once handled: Faust's own acknowledgement runs in a `finally`, so an
    # event whose handling was cancelled (a stop, a crash of the agent) would count as done.
    try:
        async for event in stream.noack().events():
            await processor.process(event, handle)
            await stream.ack(event)
    finally:
        if isinstance(dedup, DurableDeduplicator):   # a stop: the next owner skips what was handled
            try:
                await through_cancellation(dedup.flush())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dedup.flush_at_stop_failed", consumer=consumer, error=repr(exc))


async def through_cancellation(awaitable) -> None:
    """Awaits `awaitable` to its end even while this task is cancelled (a worker's stop cancels
    an agent more than once: a bare shield gave up at the second cancel, and the flush never
    ran), then raises the cancellation again. `awaitable` must end by itself (Redis's timeouts)."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()
