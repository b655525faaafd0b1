"""Many stored prescriptions in Redis, fast: copies of the state real lifecycles left.

Driving a million lifecycles through the system would take hours on one machine; what the
scale test needs is Redis holding a million prescriptions' state while new lifecycles run.
`Template` takes every per-prescription key a run left (DUMP with its time to live: ledgers,
read models, sales, claims, idempotency and de-duplication entries, quotes); `fill` RESTOREs
copies of them under new names (the original name + ":fill<n>", so a copy keeps its hash tag
and Redis Cluster slot) until the prescription count is reached. The copies have the real
keys' kinds, sizes and encodings; nothing reads them, as nothing reads most stored
prescriptions in a day. The insurer's member registry and the outboxes are not copied: members
are reference data (their count does not follow prescriptions) and an outbox is drained."""
from __future__ import annotations

from dataclasses import dataclass

from bench.redis_inventory import kind_of

NOT_PER_PRESCRIPTION = ("insurance:member", "insurance:idx")
PRESCRIPTION_KIND = "prescribing:rx"


def _per_prescription(kind: str) -> bool:
    return kind not in NOT_PER_PRESCRIPTION and not kind.split(":")[-1].startswith("outbox")


def count_prescriptions(client) -> int:
    """Stored prescriptions: the prescribing service's documents (copies included)."""
    return sum(1 for _ in client.scan_iter(match="{prescribing:*}:rx:*", count=5000))


@dataclass
class Template:
    entries: list[tuple[bytes, int, bytes]]   # (key, ttl ms or 0, DUMP payload)
    prescriptions: int

    @classmethod
    def take(cls, client, batch: int = 1000) -> "Template":
        keys = [k for k in client.scan_iter(count=5000) if _per_prescription(kind_of(k.decode()))
                and b":fill" not in k]
        entries, prescriptions = [], 0
        for i in range(0, len(keys), batch):
            pipe = client.pipeline(transaction=False)
            for key in keys[i:i + batch]:
                pipe.pttl(key)
                pipe.dump(key)
            answers = pipe.execute()
            for j, key in enumerate(keys[i:i + batch]):
                ttl, payload = answers[2 * j], answers[2 * j + 1]
                if payload is None:
                    continue
                entries.append((key, max(ttl, 0), payload))
                prescriptions += kind_of(key.decode()) == PRESCRIPTION_KIND
        return cls(entries, prescriptions)


def fill(client, template: Template, target: int, *, first_copy: int = 1, batch: int = 2000) -> int:
    """Restores copies numbered from first_copy until Redis holds at least `target` prescriptions;
    returns the next copy number (to go on from later)."""
    if template.prescriptions == 0:
        raise ValueError("the template holds no prescription to copy")
    have = count_prescriptions(client)
    copy = first_copy
    pipe, queued = client.pipeline(transaction=False), 0
    while have < target:
        suffix = b":fill%d" % copy
        for key, ttl, payload in template.entries:
            pipe.restore(key + suffix, ttl, payload, replace=True)
            queued += 1
            if queued >= batch:
                pipe.execute()
                pipe, queued = client.pipeline(transaction=False), 0
        have += template.prescriptions
        copy += 1
    if queued:
        pipe.execute()
    return copy
