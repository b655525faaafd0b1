"""The entries a relay could never produce (too large for Kafka, malformed), kept per shard
with the reason, and put back into the outbox once the cause is fixed.

    python -m services.common.outbox_dead list pharmacy
    python -m services.common.outbox_dead redrive pharmacy [--entry 1733000000000-0 ...]

A re-driven entry is appended at the end of its shard's outbox: it ships after what was
written since it died (consumers de-duplicate on the event id)."""
from __future__ import annotations

import argparse
import sys

import redis

from services.common.config import CommonSettings
from services.common.outbox import OutboxLayout


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def dead_entries(client: redis.Redis, layout: OutboxLayout) -> list[tuple[int, bytes, dict]]:
    """(shard, dead entry id, fields) of every dead entry, oldest first per shard."""
    found = []
    for shard in range(layout.shards):
        for entry_id, fields in client.xrange(layout.dead(shard)):
            found.append((shard, entry_id, fields))
    return found


def redrive(client: redis.Redis, layout: OutboxLayout, entries: set[str] | None = None) -> int:
    """Moves dead entries (all, or those named) back into their shard's outbox; returns how many."""
    moved = 0
    for shard, entry_id, fields in dead_entries(client, layout):
        if entries is not None and _text(entry_id) not in entries:
            continue
        original = {k: v for k, v in fields.items() if k not in (b"dead_reason", b"dead_from")}
        with client.pipeline(transaction=True) as pipe:
            pipe.xadd(layout.stream(shard), original)
            pipe.xdel(layout.dead(shard), entry_id)
            pipe.execute()
        moved += 1
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("list", "redrive"))
    parser.add_argument("service")
    parser.add_argument("--entry", action="append", help="a dead entry id (repeatable); default: every one")
    args = parser.parse_args(argv)
    settings = CommonSettings.from_env()
    client = redis.Redis.from_url(settings.redis_url_for("admin"), protocol=3)   # an operator's tool
    layout = OutboxLayout(args.service, settings.outbox_shards)
    if args.action == "list":
        entries = dead_entries(client, layout)
        for shard, entry_id, fields in entries:
            print(f"shard {shard} {_text(entry_id)}: {_text(fields.get(b'topic', b'?'))} "
                  f"event {_text(fields.get(b'event_id', b'?'))}, {len(fields.get(b'value', b''))} bytes: "
                  f"{_text(fields.get(b'dead_reason', b''))}")
        print(f"{len(entries)} dead entries")
        return 0
    moved = redrive(client, layout, set(args.entry) if args.entry else None)
    print(f"{moved} entries put back into the {args.service} outbox")
    return 0


if __name__ == "__main__":
    sys.exit(main())
