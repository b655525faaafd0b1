"""Who is calling, for the duration of one RPC (set by the server's interceptor)."""
from __future__ import annotations

from contextvars import ContextVar

from services.common.auth import Caller

current_caller: ContextVar[Caller | None] = ContextVar("current_caller", default=None)


def caller() -> Caller:
    value = current_caller.get()
    if value is None:
        raise RuntimeError("no authenticated caller in this context")
    return value
