import uuid

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from services.common.topics import TopicSpec, apply_topics


def topic_config(settings, name):
    admin = KafkaAdminClient(**settings.kafka_access("admin").kwargs())
    try:
        response = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        return {e[0]: e[1] for e in response[0].resources[0][4]}
    finally:
        admin.close()


def test_applying_twice_creates_once_and_reconciles_config(settings):
    name = f"apply.{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(name, 4, 1, 1, retention_ms=86_400_000)

    first = apply_topics(settings.kafka_access("admin"), [spec])
    second = apply_topics(settings.kafka_access("admin"), [spec])
    assert (first.created, second.created, second.unchanged) == ([name], [], [name])
    config = topic_config(settings, name)
    assert config["retention.ms"] == "86400000" and config["min.insync.replicas"] == "1"

    changed = TopicSpec(name, 4, 1, 1, retention_ms=3_600_000)
    assert apply_topics(settings.kafka_access("admin"), [changed]).reconfigured == [name]
    assert topic_config(settings, name)["retention.ms"] == "3600000"


def test_a_partition_count_that_differs_is_reported_not_changed(settings):
    name = f"apply.{uuid.uuid4().hex[:8]}"
    apply_topics(settings.kafka_access("admin"), [TopicSpec(name, 2, 1, 1)])
    report = apply_topics(settings.kafka_access("admin"), [TopicSpec(name, 6, 1, 1)])
    assert report.problems and "has 2 partitions, declared 6" in report.problems[0]
