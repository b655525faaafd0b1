"""Shows what is in a dead-letter topic: where each message came from and why it failed;
with --redrive, sends those messages back to the topic they came from (key, value and their
own headers), for their consumer to try again once the cause is fixed. Consumers
de-duplicate on the event id, so re-driving a message that was handled since is harmless.

    python -m services.common.dlq rx.claims.v1.dlq [--last 20] [--redrive]"""
from __future__ import annotations

import argparse
import sys

from kafka import KafkaProducer

from services.common.kafka_security import ADMIN
from services.common.config import CommonSettings
from services.common.events import header
from services.common.topic_reader import read_to_end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic", help="a <topic>.dlq name")
    parser.add_argument("--last", type=int, default=20, help="how many of the newest messages per partition")
    parser.add_argument("--redrive", action="store_true", help="send the messages shown back to their source topic")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    shown, sent, unroutable = 0, [], 0
    admin = settings.kafka_access(ADMIN)   # an operator's tool
    producer = KafkaProducer(acks="all", enable_idempotence=True, **admin.kwargs()) if args.redrive else None
    try:
        for r in read_to_end(admin, args.topic, last=args.last):
            source = (f"{header(r.headers, 'dlq-source-topic')}[{header(r.headers, 'dlq-source-partition')}]"
                      f"@{header(r.headers, 'dlq-source-offset')}")
            print(f"{args.topic}[{r.partition}]@{r.offset} from {source} by {header(r.headers, 'dlq-consumer')}: "
                  f"{header(r.headers, 'dlq-error')} ({len(r.value or b'')} bytes, "
                  f"type {header(r.headers, 'event-type') or '?'})")
            shown += 1
            source_topic = header(r.headers, "dlq-source-topic")
            if producer is not None and not source_topic:
                print(f"  not re-driven: {args.topic}[{r.partition}]@{r.offset} names no source topic")
                unroutable += 1
            elif producer is not None:
                own = [(k, v) for k, v in (r.headers or []) if not k.startswith("dlq-")]
                sent.append(producer.send(source_topic, key=r.key, value=r.value, headers=own))
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        if producer is not None:
            producer.flush(timeout=60)
            producer.close()
    print(f"{shown} dead letters shown")
    if args.redrive:
        failed = [f for f in sent if not f.succeeded()]
        print(f"{len(sent) - len(failed)} sent back to their source topic, {len(failed) + unroutable} failed")
        return 1 if failed or unroutable else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
