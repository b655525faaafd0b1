"""The prescribing service's stream worker: projects prescription and dispense events into
the prescription statuses and the patients' medication lists.

    python -m services.prescribing.worker worker"""
from __future__ import annotations

import faust

from services.common.streams import create_app, durable_dedup, process_in_order, source_topic
from services.common.topics import DISPENSES, PRESCRIPTIONS
from services.prescribing.adapters import events
from services.prescribing.bootstrap import bootstrap
from services.prescribing.config import Settings
from services.prescribing.domain.events import DispenseRecorded, DispensingClosed, PrescriptionChanged
from services.prescribing.handlers import Prescribing

# The projections have no latency promised beyond a person's pace (a prescriber's next
# look at the list): an event may wait at the broker to come with others (issue 15).
FETCH_WAIT_MS = 50
CONSUMER = "prescribing-projections"


def projection(handlers: Prescribing):
    """The envelope handler of the read models: decode, then the handler for that event."""
    async def project(envelope) -> None:
        match events.decode(envelope):
            case PrescriptionChanged() as changed:
                await handlers.on_prescription_changed(changed)
            case DispenseRecorded() as dispensed:
                await handlers.on_dispense(dispensed)
            case DispensingClosed() as closed:
                await handlers.on_dispensing_closed(closed)
    return project


def build(settings: Settings) -> faust.App:
    app = create_app("prescribing", settings.common, fetch_wait_ms=FETCH_WAIT_MS)

    async def consume(stream):
        # The projections are idempotent too (versions, applied-event sets): the durable
        # de-duplication spares them the work of a restart's redeliveries.
        await process_in_order(app, CONSUMER, stream, projection(bootstrap(settings)[0]),
                               dedup=durable_dedup(settings.common, "prescribing", CONSUMER))

    @app.agent(source_topic(app, PRESCRIPTIONS), name="prescribing-project-prescriptions")
    async def project_prescriptions(stream):
        await consume(stream)

    @app.agent(source_topic(app, DISPENSES), name="prescribing-project-dispenses")
    async def project_dispenses(stream):
        await consume(stream)

    return app


if __name__ == "__main__":
    from services.common import eventloop
    eventloop.install()   # before the worker makes its loop
    build(Settings.from_env()).main()
