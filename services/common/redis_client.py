"""The one way a service process connects to Redis: a bounded pool that makes a caller wait
(for at most `redis_pool_timeout`) instead of failing when every connection is busy, and
socket timeouts, so a Redis that stops answering is an error, never a hang. Under
EPRX_REDIS_CLUSTER=1 the same for a Redis Cluster, where a write is acknowledged only once a
replica holds it (replicated_script)."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.connection import AbstractConnection

from services.common import metrics
from services.common.config import CommonSettings

REPLICATION_WAIT_MS = 1000   # how long a write waits for its replica before the caller is told to retry


# Redis Cluster in the middle of a failover, or no node reachable: like a connection error, the
# command may be retried (every write is idempotent or keyed by the caller's request id).
CLUSTER_TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisClusterException, redis.exceptions.ClusterError, redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError, redis.exceptions.MovedError, redis.exceptions.AskError,
)


class NotReplicated(redis.exceptions.TimeoutError):
    """Written on the master but no replica confirmed it in time: not acknowledged. The caller
    retries with the same idempotency key and gets the recorded answer once it is replicated."""


def connect(settings: CommonSettings, user: str) -> redis.asyncio.Redis:
    """As Redis ACL user `user`: a service's own, which reaches only its own keys. Under
    EPRX_REDIS_CLUSTER=1 a cluster client (redis_url is one seed node)."""
    if settings.redis_cluster:
        client = BoundedRedisCluster.from_url(
            settings.redis_url_for(user), max_connections=2 * settings.redis_pool_size,
            socket_timeout=settings.redis_socket_timeout, socket_connect_timeout=settings.redis_socket_timeout,
            protocol=3)
        client.eprx_replicas_to_wait = settings.redis_replicas_to_wait
        client.bound(settings.redis_pool_size, settings.redis_pool_timeout)
        return client
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url_for(user), max_connections=settings.redis_pool_size, timeout=settings.redis_pool_timeout,
        socket_timeout=settings.redis_socket_timeout, socket_connect_timeout=settings.redis_socket_timeout,
        protocol=3)
    metrics.observe_redis_pool(pool)
    return redis.asyncio.Redis(connection_pool=pool)


class OutboxBacklog(RuntimeError):
    """The service's outbox holds more than it should: its relay is down or Kafka refuses."""


class Readiness:
    """What a service's health reports on: Redis answers, and the service's outbox is not
    piling up (more than EPRX_OUTBOX_ALARM_DEPTH entries: the relay or Kafka is down). While
    either fails the service says NOT_SERVING, so traffic goes elsewhere before Redis fills."""

    def __init__(self, settings: CommonSettings, service: str):
        from services.common.outbox import OutboxLayout
        self.client = health_probe(settings, service)
        self._streams = OutboxLayout(service, settings.outbox_shards).streams()
        self._alarm = settings.outbox_alarm_depth

    async def check(self) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for stream in self._streams:
                pipe.xlen(stream)
            depth = sum(await pipe.execute())
        if depth > self._alarm:
            raise OutboxBacklog(f"{depth} events wait in the outbox (alarm above {self._alarm})")

    async def aclose(self) -> None:
        await self.client.aclose()


async def _disconnect_free_connections(self) -> None:
    """redis-py 8.1's ClusterNode.disconnect_free_connections (run after any connection error,
    and after a topology refresh) disconnects the free connections while they stay in the free
    list: another caller can take one mid-disconnect and find its socket gone ("Connection
    closed by server", or AttributeError on a None writer, under concurrent load). The same
    disconnect, with the connections out of the free list until it is done."""
    taken = list(self._free)
    self._free.clear()
    try:
        await asyncio.gather(*(connection.disconnect() for connection in taken), return_exceptions=True)
    finally:
        self._free.extend(taken)


ClusterNode.disconnect_free_connections = _disconnect_free_connections

_send_packed = AbstractConnection._send_packed_command


async def _send_packed_command(self, command) -> None:
    """redis-py's write of a command, with uvloop's refusal to write on a transport the server
    closed (RuntimeError "the handler is closed", where asyncio's loop raises an OSError) turned
    into the connection error it is: redis-py then drops the connection and retries, and the
    callers treat it as Redis being away (UNAVAILABLE, a retry in place) instead of a crash
    (seen in the fault runs: INTERNAL while a Redis Cluster master was killed)."""
    try:
        await _send_packed(self, command)
    except RuntimeError as exc:
        transport = getattr(self._writer, "transport", None)
        if transport is not None and transport.is_closing():
            raise ConnectionResetError(f"the connection to Redis was closed: {exc}") from exc
        raise


AbstractConnection._send_packed_command = _send_packed_command


class BoundedRedisCluster(RedisCluster):
    """A cluster client whose callers wait for their turn (at most `limit` commands in flight,
    for at most `timeout` seconds) instead of failing: redis-py's cluster client has no blocking
    pool, and a node whose connections run out is treated as failed, which reshuffles every
    node's connections under the other callers' feet."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bound(64, 2.0)   # until the caller sets its own (connect() does)

    def bound(self, limit: int, timeout: float) -> None:
        self._turns = asyncio.Semaphore(limit)
        self._turn_timeout = timeout
        self._warm = False
        self._warming = asyncio.Lock()

    async def _warm_up(self) -> None:
        """The slot map and the command table, learnt once before any concurrent use: a burst
        of first calls would each start learning them, and each relearning recycles every
        connection under the others."""
        async with self._warming:
            if not self._warm:
                await self.initialize()
                await self.commands_parser.initialize(self.get_default_node())
                self._warm = True

    @asynccontextmanager
    async def turn(self):
        if not self._warm:
            await self._warm_up()
        try:
            await asyncio.wait_for(self._turns.acquire(), self._turn_timeout)
        except asyncio.TimeoutError:
            raise redis.exceptions.ConnectionError(
                f"every Redis connection busy for {self._turn_timeout} s") from None
        try:
            yield
        finally:
            self._turns.release()

    async def execute_command(self, *args, **kwargs):
        async with self.turn():
            return await super().execute_command(*args, **kwargs)


def replicas_to_wait(client) -> int:
    """How many replicas must hold a write before it is acknowledged (0: no replication)."""
    return getattr(client, "eprx_replicas_to_wait", 0)


async def replicated_script(cluster: RedisCluster, script, keys: list, args: list, replicas: int):
    """Runs `script` on the node that owns its keys' slot, then, on the same connection, a write
    of the slot's marker and WAIT for `replicas` replicas: the marker comes after the script's
    writes (and after any earlier write of another client that the script read) in the master's
    replication stream, so its confirmation covers them. A master lost before then loses only
    what was never acknowledged."""
    marker = keys[0].split("}", 1)[0] + "}:replicated" if keys[0].startswith("{") else keys[0] + ":replicated"
    await cluster.initialize()   # the slot map, learnt at first use (a no-op afterwards)
    for _ in range(4):
        node = cluster.get_node_from_key(keys[0])
        commands = [PipelineCommand(0, "EVALSHA", script.sha, len(keys), *keys, *args) if script
                    else PipelineCommand(0, "PING"),
                    PipelineCommand(1, "SET", marker, b"1", "PX", 60_000),
                    PipelineCommand(2, "WAIT", replicas, REPLICATION_WAIT_MS)]
        try:
            if isinstance(cluster, BoundedRedisCluster):
                async with cluster.turn():
                    await node.execute_pipeline(commands)
            else:
                await node.execute_pipeline(commands)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            await cluster.nodes_manager.initialize()   # the node is gone: learn the new master
            continue
        result, acked = commands[0].result, commands[2].result
        if isinstance(result, redis.exceptions.NoScriptError):
            await node.execute_command("SCRIPT", "LOAD", script.script)
            continue
        if isinstance(result, (redis.exceptions.MovedError, redis.exceptions.AskError,
                               redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)):
            await cluster.nodes_manager.initialize()
            continue
        if isinstance(result, Exception):
            raise result
        if isinstance(acked, Exception) or acked < replicas:
            raise NotReplicated(f"no replica confirmed the write within {REPLICATION_WAIT_MS} ms")
        return result
    raise redis.exceptions.ConnectionError("the cluster's slot owner could not be reached")


async def replication_barrier(client, key: str) -> None:
    """Before an answer read from Redis is given again (an idempotent retry): returns once a
    replica holds everything the key's master had written, the answer included (no-op without
    replicas to wait for). Raises NotReplicated otherwise."""
    replicas = replicas_to_wait(client)
    if replicas:
        await replicated_script(client, None, [key], [], replicas)


def health_probe(settings: CommonSettings, user: str) -> redis.asyncio.Redis:
    """A client of one connection for the health check alone: under load, the service's
    pool may be busy for a moment, which is not Redis being down."""
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url_for(user), socket_timeout=settings.redis_socket_timeout,
                                     socket_connect_timeout=settings.redis_socket_timeout, protocol=3)
    return redis.asyncio.Redis.from_url(settings.redis_url_for(user), socket_timeout=settings.redis_socket_timeout,
                                        socket_connect_timeout=settings.redis_socket_timeout,
                                        single_connection_client=True, protocol=3)
