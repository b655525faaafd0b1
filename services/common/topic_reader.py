"""Reading topics outside a consumer group: a topic from a start to the end it has now
(replays, exports, the DLQ tool, tests), and following a topic as it grows (the demo, the
benchmark). The one place that assigns partitions and seeks by hand."""
from __future__ import annotations

from typing import Iterator, Mapping

from kafka import KafkaConsumer, TopicPartition

from services.common.kafka_security import KafkaAccess, kwargs_of

Kafka = KafkaAccess | str   # a principal's access, or a bare bootstrap (plaintext development)


def _consumer(kafka: Kafka) -> KafkaConsumer:
    return KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **kwargs_of(kafka))


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    found = consumer.partitions_for_topic(topic)
    if not found:
        raise LookupError(f"no topic {topic}")
    return [TopicPartition(topic, p) for p in sorted(found)]


def end_offsets(bootstrap_servers: Kafka, topic: str) -> dict[int, int]:
    """partition -> the offset the next record will get."""
    consumer = _consumer(bootstrap_servers)
    try:
        return {tp.partition: offset for tp, offset in consumer.end_offsets(_partitions(consumer, topic)).items()}
    finally:
        consumer.close()


def topic_size(bootstrap_servers: Kafka, topic: str) -> int:
    """Records the topic holds now, at most (the log start may have moved past deleted ones)."""
    consumer = _consumer(bootstrap_servers)
    try:
        partitions = _partitions(consumer, topic)
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()


def read_to_end(bootstrap_servers: Kafka, topic: str, *, from_offsets: Mapping[int, int] | None = None,
                last: int | None = None) -> Iterator:
    """Yields every record of the topic that exists now, partition by partition in order: from
    the beginning, from the given offset of each partition, or only the `last` per partition."""
    consumer = _consumer(bootstrap_servers)
    try:
        partitions = _partitions(consumer, topic)
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            if from_offsets is not None:
                consumer.seek(tp, from_offsets.get(tp.partition, 0))
            elif last is not None:
                consumer.seek(tp, max(0, ends[tp] - last))
            else:
                consumer.seek_to_beginning(tp)
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500, max_records=2000).values():
                for record in records:
                    if record.offset < ends[TopicPartition(record.topic, record.partition)]:
                        yield record
    finally:
        consumer.close()


class TopicFollower:
    """Every partition of a topic from its beginning (or its current end), as it grows."""

    def __init__(self, bootstrap_servers: Kafka, topic: str, *, from_end: bool = False):
        self._consumer = _consumer(bootstrap_servers)
        partitions = _partitions(self._consumer, topic)
        self._consumer.assign(partitions)
        if from_end:
            self._consumer.seek_to_end(*partitions)
            for tp in partitions:
                self._consumer.position(tp)  # resolves the end now, not at the first poll
        else:
            self._consumer.seek_to_beginning(*partitions)

    def poll(self, timeout_ms: int = 500) -> list:
        return [record for records in self._consumer.poll(timeout_ms=timeout_ms).values() for record in records]

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "TopicFollower":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
