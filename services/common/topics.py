"""Every Kafka topic of the platform, declared once, and applied idempotently.

The broker runs with automatic topic creation off: a topic exists because it is here."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.common.config import CommonSettings
from services.common.kafka_security import ADMIN, apply_acls, kwargs_of, platform_acls

FOREVER = -1
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000

PRESCRIPTIONS = "rx.prescriptions.v1"
DISPENSES = "rx.dispenses.v1"
CLAIMS = "rx.claims.v1"
CLAIMS_ADJUDICATED = "rx.claims.adjudicated.v1"
ALERTS = "rx.alerts.v1"
AUDIT = "rx.audit.v1"          # who read or changed whose data; kept 10 years (services/common/audit.py)
TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def acls():
    """Who may read and write which topic (services/common/kafka_security.py)."""
    return platform_acls({"prescriptions": PRESCRIPTIONS, "dispenses": DISPENSES, "claims": CLAIMS,
                          "adjudicated": CLAIMS_ADJUDICATED, "alerts": ALERTS}, audit=AUDIT)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int
    cleanup_policy: str = "delete"
    retention_ms: int = FOREVER
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(self.min_insync_replicas),
            **self.extra,
        }


def platform_topics(settings: CommonSettings) -> list[TopicSpec]:
    """Event topics keep everything: read models and the ledger are rebuilt by replaying them."""
    def spec(name: str, **kw) -> TopicSpec:
        return TopicSpec(name, settings.topic_partitions, settings.replication_factor,
                         settings.min_insync_replicas, **kw)

    topics = [spec(t) for t in (PRESCRIPTIONS, DISPENSES, CLAIMS, CLAIMS_ADJUDICATED, ALERTS)]
    return topics + [spec(dlq(t.name), retention_ms=THIRTY_DAYS_MS) for t in topics] + [
        spec(AUDIT, retention_ms=TEN_YEARS_MS)]


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    reconfigured: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def apply_topics(bootstrap, specs: list[TopicSpec], *, client_id: str = "eprx-topics") -> ApplyReport:
    """`bootstrap`: the admin principal's KafkaAccess (or a bare bootstrap, plaintext)."""
    report = ApplyReport()
    admin = KafkaAdminClient(client_id=client_id, **kwargs_of(bootstrap))
    try:
        existing = {t["topic"]: t for t in admin.describe_topics()}
        missing = [s for s in specs if s.name not in existing]
        for s in missing:
            try:
                admin.create_topics([NewTopic(s.name, s.partitions, s.replication_factor,
                                              topic_configs=s.configs())])
                report.created.append(s.name)
            except TopicAlreadyExistsError:  # another starter won the race
                report.unchanged.append(s.name)
        present = [s for s in specs if s.name in existing]
        for s in present:
            partitions = len(existing[s.name]["partitions"])
            if partitions != s.partitions:
                # Changing the count moves keys to other partitions and breaks per-key order.
                report.problems.append(
                    f"{s.name} has {partitions} partitions, declared {s.partitions}: "
                    "repartitioning needs a planned migration")
        if present:
            resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present]
            described = admin.describe_configs(resources)
            current = _topic_configs(described)
            for s in present:
                wanted = s.configs()
                have = current.get(s.name, {})
                if all(have.get(k) == v for k, v in wanted.items()):
                    report.unchanged.append(s.name)
                    continue
                admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name, configs=wanted)])
                report.reconfigured.append(s.name)
    finally:
        admin.close()
    return report


def _topic_configs(responses) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries)
            name, entries = resource[3], resource[4]
            result[name] = {entry[0]: entry[1] for entry in entries}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create or reconcile the platform's Kafka topics")
    parser.parse_args(argv)
    settings = CommonSettings.from_env()
    admin = settings.kafka_access(ADMIN)
    report = apply_topics(admin, platform_topics(settings))
    granted = apply_acls(admin, acls())
    if granted:
        print(f"ACLs: {granted} bindings for {', '.join(sorted({a.principal for a in acls()}))}")
    print(f"topics: created {len(report.created)}, reconfigured {len(report.reconfigured)}, "
          f"unchanged {len(report.unchanged)}")
    for problem in report.problems:
        print(f"topics: PROBLEM {problem}", file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
