"""Shows what is in a dead-letter topic: where each message came from and why it failed.

    python -m services.common.dlq rx.claims.v1.dlq [--last 20]"""
from __future__ import annotations

import argparse
import sys

from services.common.config import CommonSettings
from services.common.events import header
from services.common.topic_reader import read_to_end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic", help="a <topic>.dlq name")
    parser.add_argument("--last", type=int, default=20, help="how many of the newest messages per partition")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    shown = 0
    try:
        for r in read_to_end(settings.kafka_bootstrap, args.topic, last=args.last):
            source = (f"{header(r.headers, 'dlq-source-topic')}[{header(r.headers, 'dlq-source-partition')}]"
                      f"@{header(r.headers, 'dlq-source-offset')}")
            print(f"{args.topic}[{r.partition}]@{r.offset} from {source} by {header(r.headers, 'dlq-consumer')}: "
                  f"{header(r.headers, 'dlq-error')} ({len(r.value or b'')} bytes, "
                  f"type {header(r.headers, 'event-type') or '?'})")
            shown += 1
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{shown} dead letters shown")
    return 0


if __name__ == "__main__":
    sys.exit(main())
