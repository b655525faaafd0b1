"""Shows what is in a dead-letter topic: where each message came from and why it failed.

    python -m services.common.dlq rx.claims.v1.dlq [--last 20]"""
from __future__ import annotations

import argparse
import sys

from kafka import KafkaConsumer, TopicPartition

from services.common.config import CommonSettings
from services.common.events import header


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic", help="a <topic>.dlq name")
    parser.add_argument("--last", type=int, default=20, help="how many of the newest messages per partition")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(args.topic, p) for p in sorted(consumer.partitions_for_topic(args.topic) or ())]
        if not partitions:
            print(f"no topic {args.topic}", file=sys.stderr)
            return 1
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(0, ends[tp] - args.last))
        shown = 0
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    source = (f"{header(r.headers, 'dlq-source-topic')}[{header(r.headers, 'dlq-source-partition')}]"
                              f"@{header(r.headers, 'dlq-source-offset')}")
                    print(f"{args.topic}[{r.partition}]@{r.offset} from {source} by {header(r.headers, 'dlq-consumer')}: "
                          f"{header(r.headers, 'dlq-error')} ({len(r.value or b'')} bytes, "
                          f"type {header(r.headers, 'event-type') or '?'})")
                    shown += 1
        print(f"{shown} dead letters shown")
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
