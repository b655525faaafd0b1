"""Wires the pharmacy service's adapters into its handlers."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from services.common import signatures
from services.common.formulary import load_formulary
from services.common.redis_client import connect
from services.common.reference_files import load_manifest
from services.kernel.calendar import utc_now
from services.common.protected_data import load_protected
from services.pharmacy.adapters.insurance_client import InsuranceClient
from services.pharmacy.adapters.redis_store import RedisLedgerStore
from services.pharmacy.config import Settings
from services.pharmacy.handlers import Dependencies, Pharmacy
from services.pharmacy.ports import Insurance, LedgerStore


def bootstrap(settings: Settings, *, clock: Callable[[], datetime] = utc_now, redis_client=None,
              insurance: Insurance | None = None, store: LedgerStore | None = None) -> tuple[Pharmacy, Callable]:
    load_manifest(settings.reference_dir)
    drugs = load_formulary(settings.reference_dir / "formulary.csv")
    verifier = signatures.DocumentVerifier(signatures.load_public_keys(settings.keys_dir))
    client = None
    if store is None:
        client = redis_client or connect(settings.common, "pharmacy")
        store = RedisLedgerStore(client, settings.common.outbox_shards,
                                 timedelta(days=settings.common.retention_days))
    own_insurance = insurance is None
    if own_insurance:
        insurance = InsuranceClient(settings.insurance_address, settings.insurance_token,
                                    settings.insurance_timeout_seconds, settings.common.pki)
    handlers = Pharmacy(Dependencies(store=store, drugs=drugs, signatures=verifier, insurance=insurance, clock=clock,
                                     protected=load_protected(settings.reference_dir)))

    async def close() -> None:
        if client is not None:
            await client.aclose()
        if own_insurance:
            await insurance.close()

    return handlers, close
