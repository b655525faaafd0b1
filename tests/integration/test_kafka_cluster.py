"""Issue 13 (1, 6): a local cluster of three KRaft nodes (replication 3, min.insync.replicas 2,
SASL_SSL and ACLs as always) keeps every acknowledged record when one broker is SIGKILLed
under a steady flow, and takes the broker back when the supervisor restarts it."""
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from services.common.config import CommonSettings
from services.common.topic_reader import read_to_end
from services.common.topics import TopicSpec, apply_topics
from tests.support import wait_until
from tests.support.prescribing_fixtures import ROOT

PORTS = {"EPRX_KAFKA_PORT": "39092", "EPRX_KAFKA_CONTROLLER_PORT": "39093", "EPRX_REDIS_PORT": "36380"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = {**os.environ, **PORTS, "EPRX_RUN_DIR": str(tmp_path_factory.mktemp("cluster") / "run"),
           "EPRX_KAFKA_BROKERS": "3", "EPRX_KAFKA_HEAP": "384m"}
    supervise = [sys.executable, str(ROOT / "deploy" / "local" / "supervise.py")]
    up = subprocess.run([*supervise, "up", "--infra-only"], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
    try:
        yield CommonSettings.from_env(env), env
    finally:
        subprocess.run([*supervise, "down"], env=env, capture_output=True, timeout=180)


def brokers(settings) -> int:
    try:
        admin = KafkaAdminClient(request_timeout_ms=3000, **settings.kafka_access("admin").kwargs())
    except Exception:
        return 0
    try:
        return len(admin.describe_cluster()["brokers"])
    finally:
        admin.close()


def test_one_broker_killed_under_load_loses_no_acknowledged_record_and_comes_back(cluster):
    settings, env = cluster
    assert settings.replication_factor == 3 and settings.min_insync_replicas == 2 and brokers(settings) == 3
    topic = f"fault.{uuid.uuid4().hex[:8]}"
    admin = settings.kafka_access("admin")
    apply_topics(admin, [TopicSpec(topic, 3, 3, 2)])
    producer = KafkaProducer(acks="all", enable_idempotence=True, retries=2**31 - 1, delivery_timeout_ms=120_000,
                             max_in_flight_requests_per_connection=1, linger_ms=5, **admin.kwargs())
    sent, stop = [], threading.Event()

    def flow():
        n = 0
        while not stop.is_set():
            key = f"k{n % 20}".encode()
            sent.append((key, n, producer.send(topic, key=key, value=str(n).encode())))
            n += 1
            if n % 50 == 0:
                producer.flush(timeout=60)    # a steady flow, paced by the cluster's own acknowledgements

    def acknowledged_count() -> int:
        return sum(1 for _, _, f in list(sent) if f.is_done and f.succeeded())
    writer = threading.Thread(target=flow)
    writer.start()
    wait_until(lambda: acknowledged_count() >= 500, timeout=60, message="the flow under way")
    pidfile = settings.run_dir / "pids" / "kafka-2.pid"
    victim = int(pidfile.read_text())
    os.kill(victim, signal.SIGKILL)           # one broker gone, hard
    before = acknowledged_count()
    wait_until(lambda: acknowledged_count() >= before + 1_000, timeout=120,
               message="a thousand more acknowledged with one broker down")
    stop.set()
    writer.join()
    producer.flush(timeout=120)
    acknowledged = [(k, n) for k, n, f in sent if f.succeeded()]
    assert len(acknowledged) == len(sent) > 1000    # min ISR 2 of 3: writes went on
    # the supervisor restarted the broker, which rejoined the cluster
    wait_until(lambda: pidfile.exists() and int(pidfile.read_text()) != victim and brokers(settings) == 3,
               timeout=120, interval=1, message="the broker restarted and back in the cluster")
    got: dict[bytes, list[int]] = {}
    for record in read_to_end(admin, topic):
        got.setdefault(record.key, []).append(int(record.value))
    assert sorted(n for ns in got.values() for n in ns) == sorted(n for _, n in acknowledged)   # all, once each
    assert all(ns == sorted(ns) for ns in got.values())                                       # per-key order
