"""Importing a worker module creates nothing: no settings read, no app, topic, table,
agent or client. The app exists only when `build(settings)` is called."""
import importlib

import faust
import pytest
import redis.asyncio
from mode import Service

WORKERS = ["services.prescribing.worker", "services.pharmacy.worker", "services.insurance.worker"]


@pytest.mark.parametrize("name", WORKERS)
def test_importing_a_worker_creates_nothing(name):
    module = importlib.reload(importlib.import_module(name))
    made = {key: value for key, value in vars(module).items()
            if isinstance(value, (faust.App, Service, faust.TopicT, redis.asyncio.Redis))
            or type(value).__name__ == "Settings"}
    assert not made, made


@pytest.mark.parametrize("name", WORKERS)
def test_build_makes_an_app_with_its_agents(name):
    from importlib import import_module
    module = import_module(name)
    import os   # built, never started: no broker, so no transport security to configure
    settings = import_module(name.replace(".worker", ".config")).Settings.from_env(
        {**os.environ, "EPRX_PLAINTEXT_DEV": "1", "EPRX_INSURANCE_TOKEN": "never-used"})
    first, second = module.build(settings), module.build(settings)
    assert isinstance(first, faust.App) and first is not second
    assert len(first.agents) >= 1
