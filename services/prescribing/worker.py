"""The prescribing service's stream worker: projects prescription and dispense events into
the prescription statuses and the patients' medication lists.

    python -m services.prescribing.worker worker"""
from __future__ import annotations

from services.common.streams import DeadLetters, EnvelopeProcessor, MemoryDeduplicator, create_app, source_topic
from services.common.topics import DISPENSES, PRESCRIPTIONS
from services.prescribing.bootstrap import bootstrap
from services.prescribing.config import Settings

settings = Settings.from_env()
app = create_app("prescribing", settings.common)
prescriptions = source_topic(app, PRESCRIPTIONS)
dispenses = source_topic(app, DISPENSES)
CONSUMER = "prescribing-projections"


async def _consume(stream):
    # The projections are idempotent (versions, applied-event sets); the in-memory
    # de-duplication only spares them the redeliveries of a rebalance.
    handlers, _ = bootstrap(settings)
    processor = EnvelopeProcessor(CONSUMER, MemoryDeduplicator(), DeadLetters(app, CONSUMER))
    async for event in stream.events():
        await processor.process(event, handlers.on_event)


@app.agent(prescriptions)
async def project_prescriptions(stream):
    await _consume(stream)


@app.agent(dispenses)
async def project_dispenses(stream):
    await _consume(stream)


if __name__ == "__main__":
    app.main()
