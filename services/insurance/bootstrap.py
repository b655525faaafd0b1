"""Wires the insurance service's adapters into its handlers."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

import redis.asyncio

from services.common import signatures
from services.kernel.calendar import utc_now
from services.insurance.adapters import reference_data
from services.insurance.adapters.redis_store import InsuranceStore
from services.insurance.config import Settings
from services.insurance.handlers import Dependencies, Insurance



def bootstrap(settings: Settings, *, clock: Callable[[], datetime] = utc_now,
              redis_client=None) -> tuple[Insurance, Callable]:
    """Refuses to start on malformed reference data; returns the handlers and a closer."""
    rules = reference_data.load(settings.reference_dir)
    client = redis_client or redis.asyncio.Redis.from_url(settings.common.redis_url, protocol=3)
    keys = settings.keys_dir / signatures.PUBLIC_FILE
    public_keys = signatures.load_public_keys(settings.keys_dir) if keys.exists() else {}
    handlers = Insurance(Dependencies(store=InsuranceStore(client), rules=rules, clock=clock, public_keys=public_keys))

    async def close() -> None:
        await client.aclose()

    return handlers, close
