"""Wires the insurance service's adapters into its handlers."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from services.common import signatures
from services.common.redis_client import connect
from services.insurance.adapters import reference_data
from services.insurance.adapters.redis_store import RedisInsuranceStore
from services.insurance.config import Settings
from services.insurance.handlers import Dependencies, Insurance
from services.insurance.ports import InsuranceStore
from services.kernel.calendar import utc_now


def bootstrap(settings: Settings, *, clock: Callable[[], datetime] = utc_now, redis_client=None,
              store: InsuranceStore | None = None) -> tuple[Insurance, Callable]:
    """Refuses to start on malformed reference data; returns the handlers and a closer."""
    rules = reference_data.load(settings.reference_dir)
    client = None
    if store is None:
        client = redis_client or connect(settings.common, "insurance")
        store = RedisInsuranceStore(client, timedelta(days=settings.common.retention_days))
    keys = settings.keys_dir / signatures.PUBLIC_FILE
    verifier = signatures.DocumentVerifier(signatures.load_public_keys(settings.keys_dir) if keys.exists() else {})
    handlers = Insurance(Dependencies(store=store, rules=rules, clock=clock, signatures=verifier))

    async def close() -> None:
        if client is not None:
            await client.aclose()

    return handlers, close
