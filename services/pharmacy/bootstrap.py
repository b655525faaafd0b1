"""Wires the pharmacy service's adapters into its handlers."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import redis.asyncio

from services.common import signatures
from services.common.formulary import load_formulary
from services.common.reference_files import load_manifest
from services.pharmacy.adapters.insurance_client import InsuranceClient
from services.pharmacy.adapters.redis_store import PharmacyStore
from services.pharmacy.config import Settings
from services.pharmacy.handlers import Dependencies, Pharmacy


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def bootstrap(settings: Settings, *, clock: Callable[[], datetime] = utc_now, redis_client=None,
              insurance=None) -> tuple[Pharmacy, Callable]:
    load_manifest(settings.reference_dir)
    drugs = load_formulary(settings.reference_dir / "formulary.csv")
    public_keys = signatures.load_public_keys(settings.keys_dir)
    client = redis_client or redis.asyncio.Redis.from_url(settings.common.redis_url, protocol=3)
    insurance = insurance or InsuranceClient(settings.insurance_address, settings.insurance_token,
                                             settings.insurance_timeout_seconds)
    handlers = Pharmacy(Dependencies(store=PharmacyStore(client, settings.common.outbox_shards), drugs=drugs,
                                     public_keys=public_keys, insurance=insurance, clock=clock))

    async def close() -> None:
        await client.aclose()
        if isinstance(insurance, InsuranceClient):
            await insurance.close()

    return handlers, close
