"""The one way a service process connects to Redis: a bounded pool that makes a caller wait
(for at most `redis_pool_timeout`) instead of failing when every connection is busy, and
socket timeouts, so a Redis that stops answering is an error, never a hang."""
from __future__ import annotations

import redis.asyncio

from services.common import metrics
from services.common.config import CommonSettings


def connect(settings: CommonSettings, user: str) -> redis.asyncio.Redis:
    """As Redis ACL user `user`: a service's own, which reaches only its own keys."""
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


def health_probe(settings: CommonSettings, user: str) -> redis.asyncio.Redis:
    """A client of one connection for the health check alone: under load, the service's
    pool may be busy for a moment, which is not Redis being down."""
    return redis.asyncio.Redis.from_url(settings.redis_url_for(user), socket_timeout=settings.redis_socket_timeout,
                                        socket_connect_timeout=settings.redis_socket_timeout,
                                        single_connection_client=True, protocol=3)
