"""Helpers for tests: wait for a condition with a deadline, read a topic to the end."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from kafka import KafkaConsumer, TopicPartition

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


def read_topic(bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 30.0) -> list:
    """Every record of the topic from the beginning, once at least `at_least` are there and the
    consumer has reached the end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list = []
        deadline = time.monotonic() + timeout
        while True:
            batch = consumer.poll(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            ends = consumer.end_offsets(partitions)
            at_end = all(consumer.position(tp) >= ends[tp] for tp in partitions)
            if at_end and len(records) >= at_least:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(records)} records after {timeout}s, wanted {at_least}")
    finally:
        consumer.close()


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


def publish(bootstrap: str, topic: str, payload, key: str, *, event_id: str | None = None):
    """Puts one event on a topic as a producing service would; returns its envelope."""
    from datetime import datetime, timezone

    from kafka import KafkaProducer

    from services.common.events import new_envelope, to_record
    envelope = new_envelope(payload, key=key, producer="test", correlation_id="test",
                            occurred_at=datetime.now(timezone.utc), event_id=event_id)
    record = to_record(envelope, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
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
    from services.common.grpc_server import is_serving
    return is_serving(f"127.0.0.1:{port}")
