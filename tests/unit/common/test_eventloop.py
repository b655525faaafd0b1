import asyncio

import pytest

from services.common import eventloop
from services.common.config import ConfigError


def test_the_event_loop_setting_takes_uvloop_or_asyncio_and_names_itself_when_wrong(monkeypatch):
    policy = asyncio.get_event_loop_policy()
    try:
        monkeypatch.setenv("EPRX_EVENT_LOOP", "asyncio")
        assert eventloop.install() == "asyncio"
        monkeypatch.setenv("EPRX_EVENT_LOOP", "uvloop")
        assert eventloop.install() == "uvloop"
        assert type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")
        monkeypatch.setenv("EPRX_EVENT_LOOP", "asycnio")
        with pytest.raises(ConfigError, match="EPRX_EVENT_LOOP"):
            eventloop.install()
    finally:
        asyncio.set_event_loop_policy(policy)
