"""Reading a topic from its beginning to the end it has now: replays, exports, reports."""
from __future__ import annotations

from typing import Iterator

from kafka import KafkaConsumer, TopicPartition


def read_to_end(bootstrap_servers: str, topic: str) -> Iterator:
    """Yields every record of the topic that exists now, partition by partition in order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500, max_records=2000).values():
                for record in records:
                    if record.offset < ends[TopicPartition(record.topic, record.partition)]:
                        yield record
    finally:
        consumer.close()
