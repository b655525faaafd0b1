"""The pharmacy stream worker: builds the dispensing ledger from rx.prescriptions.v1.

    python -m services.pharmacy.worker worker"""
from __future__ import annotations

from services.common.streams import DeadLetters, EnvelopeProcessor, MemoryDeduplicator, create_app, source_topic
from services.common.topics import PRESCRIPTIONS
from services.pharmacy.bootstrap import bootstrap
from services.pharmacy.config import Settings

settings = Settings.from_env()
app = create_app("pharmacy", settings.common)
prescriptions = source_topic(app, PRESCRIPTIONS)
CONSUMER = "pharmacy-ledger"


@app.agent(prescriptions)
async def build_ledger(stream):
    handlers, _ = bootstrap(settings)
    processor = EnvelopeProcessor(CONSUMER, MemoryDeduplicator(),
                                  DeadLetters(app, CONSUMER))
    async for event in stream.events():
        await processor.process(event, handlers.on_prescription_event)


if __name__ == "__main__":
    app.main()
