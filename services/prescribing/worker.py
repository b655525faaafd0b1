"""The prescribing service's stream worker: projects prescription and dispense events into
the prescription statuses and the patients' medication lists.

    python -m services.prescribing.worker worker"""
from __future__ import annotations

import faust

from services.common.streams import DeadLetters, EnvelopeProcessor, MemoryDeduplicator, create_app, source_topic
from services.common.topics import DISPENSES, PRESCRIPTIONS
from services.prescribing.bootstrap import bootstrap
from services.prescribing.config import Settings

CONSUMER = "prescribing-projections"


def build(settings: Settings) -> faust.App:
    app = create_app("prescribing", settings.common)

    async def consume(stream):
        # The projections are idempotent (versions, applied-event sets); the in-memory
        # de-duplication only spares them the redeliveries of a rebalance.
        handlers, _ = bootstrap(settings)
        processor = EnvelopeProcessor(CONSUMER, MemoryDeduplicator(), DeadLetters(app, CONSUMER))
        async for event in stream.events():
            await processor.process(event, handlers.on_event)

    @app.agent(source_topic(app, PRESCRIPTIONS), name="prescribing-project-prescriptions")
    async def project_prescriptions(stream):
        await consume(stream)

    @app.agent(source_topic(app, DISPENSES), name="prescribing-project-dispenses")
    async def project_dispenses(stream):
        await consume(stream)

    return app


if __name__ == "__main__":
    build(Settings.from_env()).main()
