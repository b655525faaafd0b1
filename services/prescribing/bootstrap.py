"""Wires the prescribing service's adapters into its handlers."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from services.common import signatures
from services.common.redis_client import connect
from services.kernel.calendar import utc_now
from services.common.protected_data import load_protected
from services.prescribing.adapters import reference_data
from services.prescribing.adapters.documents import Signer
from services.prescribing.adapters.redis_store import RedisPrescriptionStore
from services.prescribing.config import Settings
from services.prescribing.handlers import Dependencies, Prescribing
from services.prescribing.ports import PrescriptionStore


def bootstrap(settings: Settings, *, clock: Callable[[], datetime] = utc_now, redis_client=None,
              store: PrescriptionStore | None = None) -> tuple[Prescribing, Callable]:
    """Loads and checks the reference data and keys (refusing to start on anything
    malformed), and returns the handlers with a function that closes what was opened."""
    ref = reference_data.load(settings.reference_dir)
    keys = signatures.load_private_keys(settings.keys_dir)
    missing = sorted(p.key_id for p in ref.prescribers.values() if p.key_id not in keys)
    if missing:
        raise RuntimeError(f"no signing key in {settings.keys_dir} for prescribers {', '.join(missing)} "
                           "(run `python -m services.common.signatures`)")
    client = None
    if store is None:
        client = redis_client or connect(settings.common, "prescribing")
        store = RedisPrescriptionStore(client, settings.common.outbox_shards,
                                       timedelta(days=settings.common.retention_days))
    handlers = Prescribing(Dependencies(store=store, ref=ref, signer=Signer(keys), clock=clock,
                                        protected=load_protected(settings.reference_dir),
                                        icd_valid=reference_data.icd10_is_valid))

    async def close() -> None:
        if client is not None:
            await client.aclose()

    return handlers, close
