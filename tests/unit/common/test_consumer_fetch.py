"""A worker's Kafka consumer fetches in batches (issue 15): it asks the broker to wait up to
EPRX_FETCH_WAIT_MS for EPRX_FETCH_MIN_BYTES instead of answering with any single record, which
is what Faust asks for (aiokafka's default, fetch_min_bytes 1)."""
import faust.transport.drivers.aiokafka as faust_aiokafka

from services.common.config import CommonSettings
from services.common.streams import create_app


async def test_the_worker_consumer_waits_for_a_fuller_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("EPRX_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("EPRX_PLAINTEXT_DEV", "1")
    monkeypatch.setenv("EPRX_FETCH_WAIT_MS", "25")
    monkeypatch.setenv("EPRX_FETCH_MIN_BYTES", "12345")
    settings = CommonSettings.from_env()
    app = create_app("unit-fetch", settings)
    thread = faust_aiokafka.AIOKafkaConsumerThread(app.consumer)
    consumer = thread._create_worker_consumer(app.transport)
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (12345, 25)
    # the rest is Faust's own choice, untouched
    assert consumer._max_partition_fetch_bytes == app.conf.consumer_max_fetch_size


async def test_unset_each_worker_waits_what_its_events_can_afford(monkeypatch, tmp_path):
    monkeypatch.setenv("EPRX_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("EPRX_PLAINTEXT_DEV", "1")
    monkeypatch.delenv("EPRX_FETCH_WAIT_MS", raising=False)
    settings = CommonSettings.from_env()
    waits = {}
    for name, budget in (("unit-fetch-visible", 10), ("unit-fetch-claims", 50)):
        app = create_app(name, settings, fetch_wait_ms=budget)
        consumer = faust_aiokafka.AIOKafkaConsumerThread(app.consumer)._create_worker_consumer(app.transport)
        waits[name] = consumer._fetch_max_wait_ms
    assert waits == {"unit-fetch-visible": 10, "unit-fetch-claims": 50}


def test_the_settings_refuse_a_wait_past_faust_s_own():
    import pytest
    from services.common.config import ConfigError
    with pytest.raises(ConfigError):
        CommonSettings.from_env({"EPRX_FETCH_WAIT_MS": "5000"})


def test_a_worker_leaves_the_root_logger_at_its_level():
    """Faust's spinner would lower the root logger to DEBUG: every aiokafka debug call would
    build a record for nothing (services/common/streams.py)."""
    import logging
    from types import SimpleNamespace

    import faust.worker

    import services.common.streams  # noqa: F401  (installs the patch)
    logger = logging.getLogger("unit-spinner")
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.WARNING)
    faust.worker.Worker._setup_spinner_handler(SimpleNamespace(spinner=object()), logger, logging.WARNING)
    assert logger.level == logging.WARNING
    assert len(logger.handlers) == 1
