"""What Redis holds, by kind of key: count, bytes (MEMORY USAGE) and how many keys expire.

A key's kind is its service (the hash tag's name, without the shard) and its first part after
the tag, e.g. `{pharmacy:s0003}:ledger:CODE` is `pharmacy:ledger`; a key without a tag is its
first two parts. Used by the benchmark to say where the bytes per prescription go.

    python bench/redis_inventory.py REDIS_URL"""
from __future__ import annotations

import re
import sys
from collections import defaultdict

_TAGGED = re.compile(r"^\{([^}:]+)(?::[^}]*)?\}:?([^:]*)")


def kind_of(key: str) -> str:
    match = _TAGGED.match(key)
    if match:
        return f"{match.group(1)}:{match.group(2)}" if match.group(2) else match.group(1)
    return ":".join(key.split(":")[:2])


def inventory(client, batch: int = 1000) -> dict[str, dict]:
    """Every key of the database (SCAN, so a live system keeps serving), by kind, largest first."""
    kinds: dict[str, dict] = defaultdict(lambda: {"keys": 0, "bytes": 0, "expiring": 0})
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, count=batch)
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)
                pipe.pttl(key)
            answers = pipe.execute()
            for i, key in enumerate(keys):
                size, ttl = answers[2 * i], answers[2 * i + 1]
                if size is None:       # gone between SCAN and MEMORY USAGE
                    continue
                row = kinds[kind_of(key.decode() if isinstance(key, bytes) else key)]
                row["keys"] += 1
                row["bytes"] += size
                row["expiring"] += ttl is not None and ttl >= 0
        if cursor == 0:
            break
    return dict(sorted(kinds.items(), key=lambda item: -item[1]["bytes"]))


def main() -> int:
    import redis
    rows = inventory(redis.Redis.from_url(sys.argv[1]))
    print(f"{'kind':<36}{'keys':>10}{'bytes':>14}{'expiring':>10}")
    for kind, row in rows.items():
        print(f"{kind:<36}{row['keys']:>10}{row['bytes']:>14}{row['expiring']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
