"""The insurance stream worker:

- adjudicates every claim on rx.claims.v1 (keyed by member) and publishes ClaimAdjudicated,
  keeping each member's yearly co-payment accumulator in a Faust table (changelog in Kafka);
- reads rx.prescriptions.v1 to know the prescriptions claims refer to, and raises
  doctor-shopping SafetyAlerts on rx.alerts.v1.

    python -m services.insurance.worker worker"""
from __future__ import annotations

import asyncio
import weakref

import faust.streams as faust_streams

from services.common.streams import DeadLetters, EnvelopeProcessor, MemoryDeduplicator, create_app, source_topic
from services.common.topics import ALERTS, CLAIMS, CLAIMS_ADJUDICATED, PRESCRIPTIONS
from services.insurance.bootstrap import bootstrap
from services.insurance.config import Settings
from services.insurance.domain.adjudication import empty_state

BATCH_SIZE = 200
BATCH_WITHIN_SECONDS = 0.01
settings = Settings.from_env()
app = create_app("insurance", settings.common)
claims = source_topic(app, CLAIMS)
prescriptions = source_topic(app, PRESCRIPTIONS)
outputs = {CLAIMS_ADJUDICATED: source_topic(app, CLAIMS_ADJUDICATED), ALERTS: source_topic(app, ALERTS)}
# Keyed like rx.claims.v1 (member id), so each member's state lives with its claims' partition.
accumulators = app.Table("member-accumulators", default=None, partitions=settings.common.topic_partitions)


def make_handlers():
    return bootstrap(settings)[0]


async def publish(records) -> None:
    """Hands the records to Faust's producer, which flushes before it commits the source
    offsets: a crash before that re-delivers the source event, and `adjudicate` re-sends."""
    for record in records:
        await outputs[record.topic].send(key=record.key, value=record.value, headers=list(record.headers))


@app.agent(claims)
async def adjudicate(stream):
    handlers = make_handlers()
    # The table is the memory of what was handled: a redelivered claim is recognised there.
    processor = EnvelopeProcessor("insurance-adjudicator", MemoryDeduplicator(), DeadLetters(app, "insurance-adjudicator"))

    async def handle(envelope) -> None:
        if envelope.WhichOneof("payload") not in ("claim_submitted", "claim_reversal_requested"):
            raise ValueError(f"{envelope.event_type} does not belong on the claims topic")
        member = envelope.key
        if not member:
            raise ValueError("a claim event needs the member id as its key")
        state = accumulators.get(member) or empty_state()
        claim_id = _payload(envelope).claim_id
        marker = "event" if envelope.WhichOneof("payload") == "claim_submitted" else "reversal_event"
        before = state["claims"].get(claim_id)
        if before is not None and before.get(marker) == envelope.event_id:
            # Redelivered after its outcome was recorded: send that outcome again, in case the
            # crash lost it; the same event id lets every consumer drop the copy.
            await publish(await handlers.republish(envelope))
            return
        records, new_state = await handlers.on_claim_event(envelope, state)
        await publish(records)
        after = new_state["claims"].get(claim_id)
        if after is not None and (before is None or marker == "reversal_event"):
            after[marker] = envelope.event_id
        accumulators[member] = new_state

    async def in_order(events) -> None:
        for event in events:
            # A table write goes to the changelog partition of the current event, which Faust
            # reads from this context variable; take_events leaves it on the batch's last event.
            token = faust_streams._current_event.set(weakref.ref(event))
            try:
                await processor.process(event, handle)
            finally:
                faust_streams._current_event.reset(token)

    # Claims of different members are independent: a batch is handled member by member in
    # parallel, each member's claims in their order. Events are acked after their batch.
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
        by_member: dict = {}
        for event in events:
            by_member.setdefault(event.key, []).append(event)
        await asyncio.gather(*(in_order(member_events) for member_events in by_member.values()))


@app.agent(prescriptions)
async def watch_prescriptions(stream):
    handlers = make_handlers()
    processor = EnvelopeProcessor("insurance-prescriptions", MemoryDeduplicator(),
                                  DeadLetters(app, "insurance-prescriptions"))

    async def handle(envelope) -> None:
        await publish(await handlers.on_prescription_event(envelope))

    async for event in stream.events():
        await processor.process(event, handle)


def _payload(envelope):
    return getattr(envelope, envelope.WhichOneof("payload"))


if __name__ == "__main__":
    app.main()
