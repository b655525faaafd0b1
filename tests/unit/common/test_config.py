from pathlib import Path

import pytest

from services.common.config import CommonSettings, ConfigError


def test_defaults_work_on_a_laptop():
    s = CommonSettings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6380/0"
    assert s.credentials_file == s.run_dir / "credentials" / "credentials.json"
    assert (s.replication_factor, s.min_insync_replicas) == (1, 1)


def test_ports_drive_the_derived_addresses():
    s = CommonSettings.from_env({"EPRX_KAFKA_PORT": "19092", "EPRX_REDIS_PORT": "16380",
                                 "EPRX_RUN_DIR": "/tmp/x"})
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.redis_url.endswith(":16380/0")
    assert s.run_dir == Path("/tmp/x")


def test_settings_are_frozen():
    s = CommonSettings.from_env({})
    with pytest.raises(Exception):
        s.topic_partitions = 3


@pytest.mark.parametrize("env, message", [
    ({"EPRX_TOPIC_PARTITIONS": "six"}, "EPRX_TOPIC_PARTITIONS must be an integer"),
    ({"EPRX_TOPIC_PARTITIONS": "0"}, "EPRX_TOPIC_PARTITIONS must be between 1 and 1024"),
    ({"EPRX_REDIS_PORT": "70000"}, "EPRX_REDIS_PORT must be between 1 and 65535"),
    ({"EPRX_LOG_FORMAT": "xml"}, "EPRX_LOG_FORMAT must be one of auto, json, console"),
    ({"EPRX_REPLICATION_FACTOR": "1", "EPRX_MIN_INSYNC_REPLICAS": "2"}, "cannot exceed"),
])
def test_bad_values_fail_fast_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        CommonSettings.from_env(env)
