"""The pharmacy stream worker: builds the dispensing ledger from rx.prescriptions.v1.

    python -m services.pharmacy.worker worker"""
from __future__ import annotations

import faust

from services.common.streams import create_app, durable_dedup, process_in_order, source_topic
from services.common.topics import PRESCRIPTIONS
from services.pharmacy.adapters.events import decode_prescription_event
from services.pharmacy.bootstrap import bootstrap
from services.pharmacy.config import Settings
from services.pharmacy.domain.events import PrescriptionClosed, PrescriptionIssued
from services.pharmacy.handlers import Pharmacy

# A prescription must be visible at a pharmacy within 100 ms of its issue at p99: the
# ledger's events wait at the broker this long at most to come with others (issue 15).
FETCH_WAIT_MS = 10
CONSUMER = "pharmacy-ledger"


def ledger_projection(handlers: Pharmacy):
    """The envelope handler of the ledger: decode, then the handler for that event."""
    async def project(envelope) -> None:
        match decode_prescription_event(envelope):
            case PrescriptionIssued() as issued:
                await handlers.on_prescription_issued(issued)
            case PrescriptionClosed() as closed:
                await handlers.on_prescription_closed(closed)
    return project


def build(settings: Settings) -> faust.App:
    app = create_app("pharmacy", settings.common, fetch_wait_ms=FETCH_WAIT_MS)

    @app.agent(source_topic(app, PRESCRIPTIONS), name="pharmacy-build-ledger")
    async def build_ledger(stream):
        await process_in_order(app, CONSUMER, stream, ledger_projection(bootstrap(settings)[0]),
                               dedup=durable_dedup(settings.common, "pharmacy", CONSUMER))

    return app


if __name__ == "__main__":
    from services.common import eventloop
    eventloop.install()   # before the worker makes its loop
    build(Settings.from_env()).main()
