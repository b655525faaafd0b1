"""Kafka as each principal sees it: SASL_SSL only, the right password only, and each service
writing only the topics it owns and reading only what it consumes (the StandardAuthorizer
with the ACLs of services/common/kafka_security.py)."""
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, NoBrokersAvailable

from services.common.kafka_security import KafkaAccess
from services.common.topics import ALERTS, CLAIMS, CLAIMS_ADJUDICATED, PRESCRIPTIONS


def produce(access: KafkaAccess, topic: str, value: bytes = b"x", key: bytes = b"k"):
    producer = KafkaProducer(acks="all", max_block_ms=8000, request_timeout_ms=8000, retries=0, **access.kwargs())
    try:
        return producer.send(topic, key=key, value=value).get(timeout=10)
    finally:
        producer.close(timeout=5)


def read_one(access: KafkaAccess, topic: str):
    """The topic's first records as `access` sees them; raises KafkaError when the broker
    refuses the principal the topic (and checks the refusal was an authorization one)."""
    consumer = KafkaConsumer(enable_auto_commit=False, request_timeout_ms=4000, **access.kwargs())
    try:
        tp = TopicPartition(topic, 0)
        try:
            consumer.end_offsets([tp])
        except KafkaError:
            assert topic in consumer._client.cluster.unauthorized_topics, "refused, but not by the authorizer"
            raise
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        return consumer.poll(timeout_ms=3000)
    finally:
        consumer.close()


def test_a_client_without_sasl_or_with_a_wrong_password_is_refused(settings):
    assert settings.kafka_access("pharmacy").secured, "make test runs Kafka with SASL_SSL"
    with pytest.raises((NoBrokersAvailable, KafkaError)):
        KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_block_ms=3000,
                      api_version_auto_timeout_ms=3000).send(PRESCRIPTIONS, b"x").get(timeout=5)
    pharmacy = settings.kafka_access("pharmacy")
    wrong = KafkaAccess(pharmacy.bootstrap, "pharmacy", "not-the-password", pharmacy.cafile)
    with pytest.raises((NoBrokersAvailable, KafkaError)):
        produce(wrong, CLAIMS)


def test_the_pharmacy_writes_its_topics_only_and_cannot_read_alerts(settings):
    pharmacy = settings.kafka_access("pharmacy")
    for topic in (CLAIMS_ADJUDICATED, ALERTS, PRESCRIPTIONS):
        with pytest.raises(KafkaError) as refused:
            produce(pharmacy, topic)
        assert "Authorization" in type(refused.value).__name__, refused.value
    with pytest.raises(KafkaError):
        read_one(pharmacy, ALERTS)   # read_one checks the authorizer refused it
    read_one(pharmacy, PRESCRIPTIONS)   # what it consumes, it reads


def test_the_agency_reads_outcomes_and_alerts_only(settings):
    agency = settings.kafka_access("agency")
    read_one(agency, CLAIMS_ADJUDICATED)
    read_one(agency, ALERTS)
    for topic in (CLAIMS, PRESCRIPTIONS):
        with pytest.raises(KafkaError):
            read_one(agency, topic)
    with pytest.raises(KafkaError):
        produce(agency, CLAIMS_ADJUDICATED)
