"""Helpers for tests: wait for a condition with a deadline, read a topic to the end."""
from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Callable, TypeVar

from services.common.topic_reader import read_to_end

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05,
               message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def read_topic(bootstrap, topic: str, *, at_least: int = 0, timeout: float = 30.0) -> list:
    """Every record of the topic from the beginning, once at least `at_least` are there."""
    records: list = []

    def enough() -> bool:
        records[:] = read_to_end(bootstrap, topic)
        return len(records) >= at_least
    wait_until(enough, timeout=timeout, interval=0.2, message=f"{at_least} records on {topic}")
    return list(records)


async def eventually(condition, *, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    """wait_until for coroutines: awaits condition() until it returns something truthy."""
    import asyncio
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def random_citizen_id() -> str:
    import secrets
    return "0" + "".join(secrets.choice("0123456789") for _ in range(11))


def publish(bootstrap, topic: str, payload, key: str, *, event_id: str | None = None):
    """Puts one event on a topic as a producing service would; returns its envelope."""
    from kafka import KafkaProducer

    from services.common.kafka_security import kwargs_of
    from services.common.events import new_envelope, to_record
    from services.kernel.calendar import utc_now
    envelope = new_envelope(payload, key=key, producer="test", correlation_id="test",
                            occurred_at=utc_now(), event_id=event_id)
    record = to_record(envelope, topic)
    producer = KafkaProducer(acks="all", **kwargs_of(bootstrap))
    try:
        producer.send(topic, key=record.key, value=record.value, headers=list(record.headers)).get(10)
    finally:
        producer.close()
    return envelope


def random_digits(n: int) -> str:
    import secrets
    return "".join(secrets.choice("0123456789") for _ in range(n))


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving(port: int) -> bool:
    from services.common.config import CommonSettings
    from services.common.grpc_server import is_serving
    pki = CommonSettings.from_env().pki
    return is_serving(f"127.0.0.1:{port}", pki if pki.enabled else None)


def redis_cluster_mode() -> bool:
    import os
    return os.environ.get("EPRX_REDIS_CLUSTER", "0") == "1"


def admin_redis_async(url: str | None = None, **options):
    """An async client as Redis's `admin` (a cluster client under EPRX_REDIS_CLUSTER=1)."""
    import redis.asyncio
    from redis.asyncio.cluster import RedisCluster

    from services.common.config import CommonSettings
    url = url or CommonSettings.from_env().redis_url_for("admin")
    options.setdefault("protocol", 3)
    if redis_cluster_mode():
        options.pop("db", None)   # a cluster has database 0 only
        return RedisCluster.from_url(url, **options)
    return redis.asyncio.Redis.from_url(url, **options)


def admin_redis_sync(url: str | None = None, **options):
    """A client as Redis's `admin` (a cluster client under EPRX_REDIS_CLUSTER=1)."""
    import redis

    from services.common.config import CommonSettings
    url = url or CommonSettings.from_env().redis_url_for("admin")
    if redis_cluster_mode():
        options.pop("db", None)
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


@asynccontextmanager
async def empty_redis_database(db: int):
    """A Redis database of its own (the test Redis), empty before and after: what a test
    writes there no relay ships and no other test reads."""
    client = admin_redis_async(db=db)   # on a cluster: database 0 (`make test-redis-cluster` runs these first)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


def memory_and_redis(memory: Callable, redis_backend: Callable, db: int):
    """A `backend` fixture that runs a contract suite once on the in-memory store and once on
    Redis (an empty database of its own)."""
    import pytest

    @pytest.fixture(params=["memory", "redis"])
    async def backend(request):
        if request.param == "memory":
            yield memory()
            return
        async with empty_redis_database(db) as client:
            yield redis_backend(client)
    return backend
