"""The event loop every asyncio process runs on: uvloop (libuv) unless EPRX_EVENT_LOOP=asyncio.
It works with grpc.aio, aiokafka and Faust, and spends less CPU per call and per event than
asyncio's own loop (the benchmark's CPU per lifecycle)."""
from __future__ import annotations

import asyncio


def install() -> str:
    """Makes new event loops uvloop's (call before the loop is made); returns which loop it is.
    A value other than uvloop or asyncio stops the process, naming the variable."""
    from services.common.config import Env
    if Env().choice("EVENT_LOOP", "uvloop", ("uvloop", "asyncio")) == "asyncio":
        return "asyncio"
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
