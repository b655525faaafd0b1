"""Fixtures of the real infrastructure: the Kafka and Redis that `make test` starts
(deploy/local/supervise.py up --infra-only, on the test ports)."""
from __future__ import annotations

import os
import sys
import uuid

import pytest
from kafka.admin import KafkaAdminClient

from services.common.config import CommonSettings
from services.common.topics import TopicSpec, apply_topics
from tests.support import admin_redis_async, admin_redis_sync


@pytest.fixture(scope="session")
def settings() -> CommonSettings:
    s = CommonSettings.from_env()
    try:
        admin_redis_sync(s.redis_url_for("admin"), socket_timeout=2).ping()
        KafkaAdminClient(request_timeout_ms=5000, **s.kafka_access("admin").kwargs()).close()
    except Exception as exc:  # pragma: no cover - tells the developer how to run these
        pytest.exit(f"Kafka/Redis not reachable at {s.kafka_bootstrap} / {s.redis_url} ({exc!r}); "
                    "run the suite with `make test`", returncode=3)
    return s


@pytest.fixture
def redis_sync(settings):
    client = admin_redis_sync(settings.redis_url_for("admin"), protocol=3)
    yield client
    client.close()


@pytest.fixture
async def redis_async(settings):
    client = admin_redis_async(settings.redis_url_for("admin"), protocol=3)
    yield client
    await client.aclose()


@pytest.fixture
def make_topic(settings):
    """Creates a fresh topic (and its .dlq) for one test; returns its name."""
    def create(prefix: str = "it", partitions: int = 3) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        specs = [TopicSpec(n, partitions, 1, 1) for n in (name, f"{name}.dlq")]
        report = apply_topics(settings.kafka_access("admin"), specs)
        assert sorted(report.created) == sorted(s.name for s in specs)
        return name
    return create


@pytest.fixture
def subprocess_env(settings):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, "build", "gen"), env.get("PYTHONPATH", "")])
    env.pop("EPRX_CRASH_AT", None)
    return env


@pytest.fixture
def python():
    return sys.executable
